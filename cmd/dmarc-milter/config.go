package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

// loadConfig reads the file named by the flags (or the defaults) and
// applies the flag overrides, then validates the result.
func loadConfig(f *commonFlags) (*config.Config, error) {
	c, err := config.Load(f.config)
	if err != nil {
		return nil, err
	}
	if f.listen != "" {
		c.Listen = f.listen
	}
	if f.authservID != "" {
		c.AuthservID = f.authservID
	}
	if len(f.nameservers) > 0 {
		c.DNS.Nameservers = append([]string(nil), f.nameservers...)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// cacheConfig maps the dns section to pkg/cache. pkg/cache reads a zero
// field as "use the default", so an explicit zero (no minimum TTL, no
// serve-stale, no error caching) is passed as the smallest value that
// means it.
func cacheConfig(d config.DNS) cache.Config {
	c := cache.Config{
		Nameservers: d.Nameservers,
		Timeout:     d.Timeout,
		Attempts:    d.Attempts,
		MinTTL:      d.MinTTL,
		MaxTTL:      d.MaxTTL,
		MaxNegTTL:   d.MaxNegativeTTL,
		ErrTTL:      d.ErrorTTL,
		StaleTTL:    d.ServeStale,
		MaxEntries:  d.CacheSize,
	}
	if c.MinTTL == 0 {
		c.MinTTL = time.Nanosecond
	}
	if c.MaxNegTTL == 0 {
		c.MaxNegTTL = time.Nanosecond
	}
	if c.ErrTTL == 0 {
		c.ErrTTL = -1
	}
	if c.StaleTTL == 0 {
		c.StaleTTL = -1
	}
	return c
}

// logLevel maps log_level to slog.
func logLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// warnPermissions warns when the configuration file can be changed by
// anyone: it decides what mail is rejected.
func warnPermissions(log *slog.Logger, path string) {
	if path == "" {
		return
	}
	st, err := os.Stat(path)
	if err != nil {
		return
	}
	// Whoever can write the configuration decides what mail is rejected or
	// allowlisted.
	switch perm := st.Mode().Perm(); {
	case perm&0o002 != 0:
		log.Warn("configuration file is world-writable", "path", path, "mode", fmt.Sprintf("%04o", perm))
	case perm&0o020 != 0:
		log.Warn("configuration file is group-writable", "path", path, "mode", fmt.Sprintf("%04o", perm))
	}
}

// cmdCheckConfig validates the configuration and exits 2 with one message
// when it is invalid.
func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	var f commonFlags
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	f.register(fs)
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	c, err := loadConfig(&f)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitConfig
	}
	if _, err := cache.New(cacheConfig(c.DNS)); err != nil {
		fmt.Fprintf(stderr, "config: dns: %v\n", err)
		return exitConfig
	}
	if err := checkReporting(c); err != nil {
		fmt.Fprintf(stderr, "config: %v\n", err)
		return exitConfig
	}
	src := f.config
	if src == "" {
		src = "built-in defaults"
	}
	fmt.Fprintf(stdout, "%s: ok (listen %s, mode %s)\n", src, c.Listen, c.Mode)
	return exitOK
}
