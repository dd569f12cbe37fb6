package main

import (
	"context"
	"fmt"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/intake"
	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// intakeRun is the intake of serve: the store it writes and its background
// work. nil when [intake] domains is empty (then nothing touches the disk).
type intakeRun struct {
	st *store.Store
	d  *intake.Daemon
}

// startIntake opens the store and starts the intake when [intake] domains
// is set, and makes eng capture report mail. It shares [store] url with the
// report recorder (its own handle on the same database).
func (d *daemon) startIntake(cfg *config.Config, eng *milter.Engine) error {
	if len(cfg.Intake.Domains) == 0 {
		return nil
	}
	st, err := store.Open(context.Background(), cfg.StoreURL(), store.Options{Logger: d.log})
	if err != nil {
		return fmt.Errorf("intake: %w", err)
	}
	run := &intakeRun{st: st}
	run.d, err = intake.StartDaemon(st, d.res, cfg.Intake, policy.Method(cfg.DMARC.Discovery), d.log, d.metrics.NewIntake())
	if err != nil {
		st.Close()
		return err
	}
	d.intake = run
	d.attachIntake(eng)
	d.log.Info("intake started", "domains", cfg.Intake.Domains, "addresses", cfg.Intake.Addresses)
	return nil
}

// attachIntake makes eng (a new engine after a reload, too) capture report
// mail for the running intake. [intake] changes need a restart.
func (d *daemon) attachIntake(eng *milter.Engine) {
	if d.intake != nil {
		eng.SetCapturer(d.intake.d.Capture)
	}
}

// stopIntake stores the captured mail still queued and closes the store.
func (d *daemon) stopIntake(ctx context.Context) {
	if d.intake == nil {
		return
	}
	d.intake.d.Stop(ctx)
	d.intake.st.Close()
}
