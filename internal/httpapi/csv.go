package httpapi

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/corral-iot/corral/internal/registry"
)

// ReadNamesCSV reads DeviceNames from CSV: the first column of each row,
// an optional header row whose first cell is "deviceName", blank lines
// skipped. When the header names a "thingName" column, things holds that
// column (one per name, "" for the default). More than max rows is an
// error wrapping registry.ErrTooLarge.
func ReadNamesCSV(r io.Reader, max int) (names, things []string, err error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	thingCol := -1
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, nil, &badRequest{field: "body", msg: fmt.Sprintf("CSV line %d: %v", pe.Line, pe.Err)}
			}
			return nil, nil, err
		}
		name := strings.TrimSpace(strings.TrimPrefix(rec[0], "\ufeff"))
		if len(names) == 0 && line == 1 && strings.EqualFold(name, "deviceName") {
			for i, h := range rec {
				if i > 0 && strings.EqualFold(strings.TrimSpace(h), "thingName") {
					thingCol = i
				}
			}
			continue
		}
		if name == "" && len(rec) == 1 {
			continue
		}
		if len(names) == max {
			return nil, nil, fmt.Errorf("CSV holds more than %d names: %w", max, registry.ErrTooLarge)
		}
		names = append(names, name)
		if thingCol > 0 {
			thing := ""
			if thingCol < len(rec) {
				thing = strings.TrimSpace(rec[thingCol])
			}
			things = append(things, thing)
		}
	}
	if len(names) == 0 {
		return nil, nil, &badRequest{field: "body", msg: "CSV holds no device names"}
	}
	return names, things, nil
}
