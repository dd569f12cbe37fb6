// Package report is the data model of DMARC aggregate reports, RFC 9990
// (https://datatracker.ietf.org/doc/html/rfc9990), with the code that
// writes the reports we send and reads the reports other receivers send us.
//
// A DMARC aggregate report is an XML document (root element feedback) that
// a mail receiver sends, usually once a day, to the addresses a domain owner
// lists in the rua tag of its DMARC Policy Record. It covers one policy
// domain and one period, and holds one record per distinct combination of
// source IP address, authentication results and identifiers, with the
// number of messages seen.
//
// Writing: Marshal and MarshalLimited produce XML in RFC 9990's namespace,
// valid against its XSD; a size bound never drops records silently (the
// report says so in its error element, and the caller learns what was left
// out). NewReportID, Filename, Subject, Gzip and BuildMessage build the
// report message of RFC 9990 §3.5.2, deterministically for fixed inputs.
//
// Reading: Parse reads one XML document in RFC 9990's namespace, RFC 7489's,
// or none; ParseFile also takes .xml.gz and .zip content (detected by its
// bytes); ParseMessage takes a whole report message. They are strict on
// structure, tolerant of values (an enumeration value outside the schema is
// kept as text: see the Known methods), and bounded in memory and work by
// Limits, since reports come from anyone (RFC 9990 §8.1). Every refusal is a
// *RefusalError carrying a RefusalReason. Validate checks the date range
// against a clock. SpreadDays spreads a report's counts over UTC days.
//
// The package does no I/O beyond the readers it is given, and imports only
// the standard library.
package report
