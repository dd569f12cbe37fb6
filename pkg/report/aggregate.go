package report

import (
	"encoding/xml"
	"sort"
)

// Aggregate merges records that differ only in their count, adding the
// counts (RFC 9990 §3.1.1.7: one record per source IP, results and
// identifiers; https://datatracker.ietf.org/doc/html/rfc9990#section-3.1.1.7),
// and returns them ordered by count, highest first, then by content, so
// that the same input always gives the same report.
func Aggregate(records []Record) []Record {
	type group struct {
		key string
		rec Record
	}
	byKey := make(map[string]int)
	var groups []group
	for i := range records {
		k := recordKey(&records[i])
		if j, ok := byKey[k]; ok {
			groups[j].rec.Row.Count += records[i].Row.Count
			continue
		}
		byKey[k] = len(groups)
		groups = append(groups, group{key: k, rec: records[i]})
	}
	sort.SliceStable(groups, func(a, b int) bool {
		if groups[a].rec.Row.Count != groups[b].rec.Row.Count {
			return groups[a].rec.Row.Count > groups[b].rec.Row.Count
		}
		return groups[a].key < groups[b].key
	})
	out := make([]Record, len(groups))
	for i, g := range groups {
		out[i] = g.rec
	}
	return out
}

// recordKey is the record's XML without its count: equal keys are equal
// records as a report states them.
func recordKey(r *Record) string {
	w := wireRecordOf(r)
	w.Row.Count = 0
	b, err := xml.Marshal(w)
	if err != nil {
		// Only strings and numbers: marshalling cannot fail.
		panic("report: record key: " + err.Error())
	}
	return string(b)
}
