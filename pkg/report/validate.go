package report

import (
	"fmt"
	"time"
)

// Bounds of Validate.
const (
	// MaxClockSkew is how far in the future a report's end may lie: the
	// reporter's clock may be ahead, and some write the end of the day
	// they report before it is quite over.
	MaxClockSkew = 2 * time.Hour
	// MaxReportSpan is the longest period a report may cover. RFC 9990
	// §3.1.1.4 expects a day; some reporters send a week or a month.
	MaxReportSpan = 31 * 24 * time.Hour
)

// MinReportTime is the earliest begin Validate accepts: DMARC reports
// began in 2012.
var MinReportTime = time.Date(2012, 1, 1, 0, 0, 0, 0, time.UTC)

// Validate checks the report's date range against now: begin before end,
// not in the future, not absurdly long or old. It returns a *RefusalError
// (RefusalBadDateRange, RefusalFutureDateRange, RefusalAbsurdDateRange).
// Parse does not call it (it has no clock); the intake does.
func (f *Feedback) Validate(now time.Time) error {
	dr := f.Metadata.DateRange
	switch {
	case !dr.Begin.Before(dr.End):
		return refuse(RefusalBadDateRange, fmt.Sprintf("begin %d not before end %d", dr.Begin.Unix(), dr.End.Unix()), nil)
	case dr.End.After(now.Add(MaxClockSkew)):
		return refuse(RefusalFutureDateRange, fmt.Sprintf("end %s is in the future", dr.End.Format(time.RFC3339)), nil)
	case dr.End.Sub(dr.Begin) > MaxReportSpan:
		return refuse(RefusalAbsurdDateRange, fmt.Sprintf("a period of %s", dr.End.Sub(dr.Begin)), nil)
	case dr.Begin.Before(MinReportTime):
		return refuse(RefusalAbsurdDateRange, fmt.Sprintf("begin %s is before DMARC existed", dr.Begin.Format(time.RFC3339)), nil)
	}
	return nil
}
