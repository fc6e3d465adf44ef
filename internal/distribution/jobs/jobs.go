// Package jobs owns distribution jobs: moving up to 10,000 devices of a
// product from this corral to other instances (one instance, or one per
// device by a proximity policy; same account or another, authorised by a
// code). A job copies the product once, then for each device imports its
// triple at the destination (the secret sealed for it by transit),
// points the centre's provisioning record at the destination, marks the
// device distributed here (refused at CONNECT), notifies it if online and
// forces it off. Jobs and per-device steps are kept in a Store, so a job
// resumes after a crash or restart from the step each device reached;
// every step is idempotent.
package jobs

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/corral-iot/corral/internal/distribution"
	"github.com/corral-iot/corral/internal/registry"
)

// Errors callers switch on (distribution's, so that one mapping to HTTP
// statuses serves both); the wrapping error names the rule.
var (
	ErrInvalid  = distribution.ErrInvalid
	ErrNotFound = distribution.ErrNotFound
	ErrConflict = distribution.ErrConflict
	ErrLimit    = errors.New("limit reached")
)

// Limits of a job.
const (
	MaxDevices  = 10000 // device names per job
	MaxCSVRows  = 1000  // rows of a CSV upload
	MaxOpenJobs = 10    // initializing or running jobs per account
)

// Status is a job's state, numbered as Alibaba's QueryDeviceDistributeJob.
type Status int

// Job states. Done does not mean every device moved: see Job.Failed.
const (
	StatusInitializing Status = 0
	StatusRunning      Status = 1
	StatusDone         Status = 2
	StatusAborted      Status = 3
)

// Open tells whether the job has not finished.
func (s Status) Open() bool { return s == StatusInitializing || s == StatusRunning }

func (s Status) String() string {
	switch s {
	case StatusInitializing:
		return "initializing"
	case StatusRunning:
		return "running"
	case StatusDone:
		return "done"
	case StatusAborted:
		return "aborted"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// Strategy is how a job picks each device's destination.
type Strategy int

// Strategies, numbered as Alibaba's.
const (
	// Specified moves every device to one instance.
	Specified Strategy = 0
	// Proximity chooses per device, at the time it moves, by a proximity
	// policy: by the device's address when it is online, by the policy's
	// fallback rules when it is not. The choice is then fixed in the
	// device's provisioning record.
	Proximity Strategy = 1
)

// Per-device result codes (Item.Code). 0 is not moved yet.
const (
	CodeMoved        = 200 // at the destination, record updated, refused here
	CodeNotFound     = 404 // not registered under the product here
	CodeConflict     = 409 // the destination holds another device of that name
	CodeNotChosen    = 422 // the proximity policy chose no instance
	CodeSourceFailed = 500 // reading the device or marking it here failed
	CodeRemoteFailed = 502 // the destination refused or did not answer
	CodeAborted      = 499 // the job was aborted before the device moved
)

// Job is a distribution job (QueryDeviceDistributeJob's fields, with the
// counts that make "done" honest).
type Job struct {
	JobID            string    `json:"jobId"`
	AccountID        string    `json:"-"`
	ProductKey       string    `json:"productKey"`
	SourceInstanceID string    `json:"sourceInstanceId"`
	Strategy         Strategy  `json:"strategy" doc:"0 specified instance, 1 proximity policy"`
	TargetInstanceID string    `json:"targetInstanceId,omitempty" doc:"strategy 0: the destination instance"`
	PolicyID         string    `json:"policyId,omitempty" doc:"strategy 1: the proximity policy"`
	TargetAccountID  string    `json:"targetUid,omitempty" doc:"the destination account for a cross-account job"`
	Status           Status    `json:"status" doc:"0 initializing, 1 running, 2 done (see failed), 3 aborted"`
	ProductCopied    bool      `json:"productCopied"`
	AbortRequested   bool      `json:"abortRequested,omitempty"`
	Total            int       `json:"total"`
	Moved            int       `json:"moved"`
	Failed           int       `json:"failed" doc:"devices with a result code other than 200"`
	Progress         int       `json:"progress" doc:"per cent of devices with a result"`
	Message          string    `json:"message,omitempty" doc:"why the job stopped early, if it did"`
	GmtCreate        time.Time `json:"gmtCreate"`
	GmtModified      time.Time `json:"gmtModified"`
	// authCode authorises a cross-account job at the destination; it is
	// kept in the store, never shown.
	AuthCode string `json:"-"`
}

// Step is how far a device has gone. A proximity choice and StepImported
// are saved before the next step runs, and StepDone with the result; the
// record and the mark between them are idempotent and are not saved (a
// resumed run repeats them from StepImported), which halves the writes.
type Step int

// Steps of a device, in order.
const (
	StepPending  Step = iota // nothing done (a proximity choice may be saved)
	StepImported             // the triple is at the destination
	StepRecorded             // the centre's record names the destination
	StepMarked               // refused at CONNECT here
	StepDone                 // notified and forced off if it was online; Code set
)

// Item is one device of a job (QueryDeviceDistributeDetail's row).
type Item struct {
	JobID            string `json:"-"`
	DeviceName       string `json:"deviceName"`
	TargetInstanceID string `json:"targetInstanceId,omitempty"`
	Step             Step   `json:"step"`
	Code             int    `json:"code" doc:"200 moved, 404 not registered, 409 name taken at the destination, 422 no instance chosen, 499 aborted, 500 source failure, 502 destination failure; 0 not yet"`
	Message          string `json:"message,omitempty"`
}

// Input creates a job.
type Input struct {
	ProductKey       string   `json:"productKey"`
	DeviceNames      []string `json:"deviceNames,omitempty" doc:"up to 10,000"`
	CSV              string   `json:"csv,omitempty" doc:"a CSV of up to 1,000 rows, the device name in the first column (a header deviceName is skipped)"`
	Strategy         Strategy `json:"strategy"`
	TargetInstanceID string   `json:"targetInstanceId,omitempty"`
	PolicyID         string   `json:"policyId,omitempty"`
	TargetAccountID  string   `json:"targetUid,omitempty" doc:"another account: needs authCode"`
	AuthCode         string   `json:"authCode,omitempty" doc:"issued by the destination account, valid 5 minutes"`
	DryRun           bool     `json:"dryRun,omitempty" doc:"list what would move; create nothing"`
}

// names is the validated, de-duplicated device list of in.
func (in Input) names() ([]string, error) {
	names := in.DeviceNames
	if in.CSV != "" {
		if len(names) > 0 {
			return nil, fmt.Errorf("deviceNames: %w: give deviceNames or csv, not both", ErrInvalid)
		}
		var err error
		if names, err = ParseCSV(strings.NewReader(in.CSV)); err != nil {
			return nil, err
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("deviceNames: %w: no device names", ErrInvalid)
	}
	if len(names) > MaxDevices {
		return nil, fmt.Errorf("deviceNames: %w: %d names, at most %d per job", ErrInvalid, len(names), MaxDevices)
	}
	seen := make(map[string]bool, len(names))
	out := make([]string, 0, len(names))
	for i, n := range names {
		if err := registry.ValidateDeviceName(n); err != nil {
			return nil, fmt.Errorf("deviceNames[%d]: %w: %w", i, ErrInvalid, err)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

func (in Input) validate() error {
	if in.ProductKey == "" {
		return fmt.Errorf("productKey: %w: required", ErrInvalid)
	}
	switch in.Strategy {
	case Specified:
		if in.TargetInstanceID == "" || in.PolicyID != "" {
			return fmt.Errorf("targetInstanceId: %w: strategy 0 names one targetInstanceId and no policyId", ErrInvalid)
		}
	case Proximity:
		if in.PolicyID == "" || in.TargetInstanceID != "" {
			return fmt.Errorf("policyId: %w: strategy 1 names one policyId and no targetInstanceId", ErrInvalid)
		}
		if in.TargetAccountID != "" {
			return fmt.Errorf("strategy: %w: proximity is not offered across accounts", ErrInvalid)
		}
	default:
		return fmt.Errorf("strategy: %w: 0 (specified instance) or 1 (proximity)", ErrInvalid)
	}
	if (in.TargetAccountID == "") != (in.AuthCode == "") {
		return fmt.Errorf("authCode: %w: a cross-account job gives targetUid and the authCode its account issued", ErrInvalid)
	}
	return nil
}

// ParseCSV reads device names from the first column of at most
// MaxCSVRows rows; a first row "deviceName" (any case) is a header, and
// blank rows are skipped.
func ParseCSV(r io.Reader) ([]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var names []string
	for row := 1; ; row++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("csv: %w: %w", ErrInvalid, err)
		}
		n := strings.TrimSpace(strings.TrimPrefix(rec[0], "\ufeff"))
		if row == 1 && strings.EqualFold(n, "deviceName") {
			continue
		}
		if len(names) == MaxCSVRows || row > MaxCSVRows+1 {
			return nil, fmt.Errorf("csv: %w: more than %d rows", ErrInvalid, MaxCSVRows)
		}
		if n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}
