package intake

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// benchReport is a report of r records for example.com, distinct per i.
func benchReport(i, r int) []byte {
	var b bytes.Buffer
	begin := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i%300) * 24 * time.Hour)
	fmt.Fprintf(&b, `<feedback><report_metadata><org_name>reporter%d.example</org_name><email>r@r.example</email><report_id>%d</report_id>
<date_range><begin>%d</begin><end>%d</end></date_range></report_metadata><policy_published><domain>example.com</domain><p>reject</p></policy_published>`,
		i%20, i, begin.Unix(), begin.Add(24*time.Hour).Unix())
	for j := range r {
		fmt.Fprintf(&b, `<record><row><source_ip>198.51.%d.%d</source_ip><count>%d</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>
<identifiers><header_from>example.com</header_from><envelope_from>bounce.esp.example</envelope_from></identifiers>
<auth_results><dkim><domain>example.com</domain><selector>s%d</selector><result>pass</result></dkim><spf><domain>bounce.esp.example</domain><scope>mfrom</scope><result>pass</result></spf></auth_results></record>`,
			(i+j)%4, (i*7+j)%50+1, 1+(i+j)%97, j%3)
	}
	b.WriteString("</feedback>")
	return b.Bytes()
}

// BenchmarkImportBatch: reports of 10 records stored through a Batch (as
// report import does) into SQLite.
func BenchmarkImportBatch(b *testing.B) {
	st := openStore(b, "")
	in := newIntake(st, nil, "example.com")
	docs := make([][]byte, b.N)
	for i := range docs {
		docs[i] = benchReport(i, 10)
	}
	ctx := context.Background()
	batch := in.NewBatch(func(_ string, o Outcome) {
		if o.Status != StatusStored {
			b.Fatalf("%s %s %s", o.Status, o.Reason, o.Detail)
		}
	})
	b.ResetTimer()
	for i := range b.N {
		batch.File(ctx, bytes.NewReader(docs[i]), "bench", "")
	}
	batch.Flush(ctx)
}
