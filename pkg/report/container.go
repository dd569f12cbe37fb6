package report

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Format is the container of a report file, as detected from its bytes.
type Format string

// The formats ParseFile reads.
const (
	FormatXML  Format = "xml"
	FormatGzip Format = "gzip"
	FormatZip  Format = "zip"
)

// Detect tells the format of a report file from its first bytes: the gzip
// and zip magic numbers, or XML (a "<" after an optional byte order mark
// and white space). ok is false for anything else.
func Detect(head []byte) (f Format, ok bool) {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return FormatGzip, true
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return FormatZip, true
	}
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	head = bytes.TrimLeft(head, " \t\r\n")
	if len(head) > 0 && head[0] == '<' {
		return FormatXML, true
	}
	return "", false
}

// ParseFile reads one report file: XML, gzip-compressed XML, or a zip
// archive holding one XML file, told apart by their bytes, not by a name.
// MaxInputBytes bounds the file as given, MaxXMLBytes the XML after
// decompression (a decompression bomb is refused with
// RefusalDecompressedTooLarge however its headers lie, RFC 9990 §8.1,
// https://datatracker.ietf.org/doc/html/rfc9990#section-8.1).
func ParseFile(r io.Reader, lim Limits) (*Feedback, error) {
	lim = lim.withDefaults()
	return parseFile(newLimitReader(r, lim.MaxInputBytes, RefusalTooLarge), lim)
}

func parseFile(in io.Reader, lim Limits) (*Feedback, error) {
	br := bufio.NewReaderSize(in, 512)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		if re := (*RefusalError)(nil); errors.As(err, &re) {
			return nil, re
		}
		return nil, refuse(RefusalRead, "", err)
	}
	format, ok := Detect(head)
	if !ok {
		if len(head) == 0 {
			return nil, refuse(RefusalNotXML, "empty file", nil)
		}
		return nil, refuse(RefusalUnknownFormat, fmt.Sprintf("starts with %.16q", head), nil)
	}
	switch format {
	case FormatGzip:
		return parseGzip(br, lim)
	case FormatZip:
		return parseZip(br, lim)
	}
	return parseXML(newLimitReader(br, lim.MaxXMLBytes, RefusalTooLarge), lim)
}

func parseGzip(r io.Reader, lim Limits) (*Feedback, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, archiveError(err, "gzip header")
	}
	defer zr.Close()
	// One member only: a report is one file, and further members are a
	// cheap way to multiply work.
	zr.Multistream(false)
	f, err := parseXML(newLimitReader(zr, lim.MaxXMLBytes, RefusalDecompressedTooLarge), lim)
	if err != nil {
		return nil, archiveError(err, "gzip data")
	}
	return f, nil
}

// archiveError keeps refusals and calls everything else a corrupt archive
// (a bad checksum, truncated data).
func archiveError(err error, what string) error {
	var re *RefusalError
	if errors.As(err, &re) {
		if re.Reason == RefusalRead && isArchiveErr(re.Err) {
			return refuse(RefusalCorruptArchive, what, re.Err)
		}
		return re
	}
	return refuse(RefusalCorruptArchive, what, err)
}

func isArchiveErr(err error) bool {
	return errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) ||
		errors.Is(err, zip.ErrChecksum) || errors.Is(err, zip.ErrFormat) || errors.Is(err, zip.ErrAlgorithm) ||
		errors.Is(err, io.ErrUnexpectedEOF) || isFlateErr(err)
}

func parseZip(r io.Reader, lim Limits) (*Feedback, error) {
	// archive/zip reads the central directory at the end: the archive is
	// held in memory, bounded by MaxInputBytes.
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, archiveError(err, "reading zip")
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, zip.ErrInsecurePath) { // GODEBUG=zipinsecurepath=0
		return nil, refuse(RefusalZipPath, "insecure entry name", err)
	}
	if err != nil {
		return nil, refuse(RefusalCorruptArchive, "zip directory", err)
	}
	entry, err := zipEntry(zr, lim)
	if err != nil {
		return nil, err
	}
	if entry.UncompressedSize64 > uint64(lim.MaxXMLBytes) {
		return nil, refuse(RefusalDecompressedTooLarge, fmt.Sprintf("zip entry of %d bytes", entry.UncompressedSize64), nil)
	}
	rc, err := entry.Open()
	if err != nil {
		return nil, refuse(RefusalZipEntries, "opening the entry", err)
	}
	defer rc.Close()
	// The limit holds whatever the entry's header says about its size.
	f, err := parseXML(newLimitReader(rc, lim.MaxXMLBytes, RefusalDecompressedTooLarge), lim)
	if err != nil {
		return nil, archiveError(err, "zip entry")
	}
	return f, nil
}

// zipEntry picks the report in a zip archive: its only XML file, or its
// only file. Directories are ignored; several candidates, encrypted
// entries and names with path tricks are refused.
func zipEntry(zr *zip.Reader, lim Limits) (*zip.File, error) {
	if len(zr.File) > lim.MaxZipEntries {
		return nil, refuse(RefusalZipEntries, fmt.Sprintf("%d entries", len(zr.File)), nil)
	}
	var files, xmls []*zip.File
	for _, f := range zr.File {
		if err := checkZipName(f.Name); err != nil {
			return nil, err
		}
		if f.FileInfo().IsDir() {
			continue
		}
		if f.Flags&0x1 != 0 {
			return nil, refuse(RefusalZipEntries, fmt.Sprintf("entry %.60q is encrypted", f.Name), nil)
		}
		files = append(files, f)
		if strings.EqualFold(path.Ext(f.Name), ".xml") {
			xmls = append(xmls, f)
		}
	}
	switch {
	case len(xmls) == 1:
		return xmls[0], nil
	case len(xmls) > 1:
		return nil, refuse(RefusalZipEntries, fmt.Sprintf("%d XML files", len(xmls)), nil)
	case len(files) == 1:
		return files[0], nil
	}
	return nil, refuse(RefusalZipEntries, fmt.Sprintf("no XML file among %d files", len(files)), nil)
}

// checkZipName refuses names that would escape a directory if anyone
// extracted the archive: we never write entries to disk, but such a name
// in a report is an attack, not a mistake.
func checkZipName(name string) error {
	bad := func(why string) error {
		return refuse(RefusalZipPath, fmt.Sprintf("entry %.80q: %s", name, why), nil)
	}
	switch {
	case name == "":
		return bad("empty name")
	case strings.HasPrefix(name, "/"):
		return bad("absolute path")
	case strings.Contains(name, "\\"):
		return bad("backslash")
	case len(name) >= 2 && name[1] == ':':
		return bad("drive letter")
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return bad("parent directory")
		}
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return bad("control character")
		}
	}
	return nil
}

func isFlateErr(err error) bool {
	var ce flate.CorruptInputError
	return errors.As(err, &ce)
}
