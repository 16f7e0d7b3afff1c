package contacts

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/leadmaster/leadmaster/internal/hub"
	"github.com/leadmaster/leadmaster/internal/store"
)

// ImportOptions tune a CSV import.
type ImportOptions struct {
	// Columns maps a field (phone, name, tags, opted_out) to the header of the column that
	// holds it. Fields not given are found by their usual names (see headerAliases).
	Columns map[string]string
	// Region reads numbers written without a country code (ISO 3166 code such as AR).
	Region string
}

// MaxImportRows bounds one import.
const MaxImportRows = 100_000

// headerAliases are the column names recognised without a mapping, compared lowercased with
// accents and separators removed.
var headerAliases = map[string][]string{
	"phone":     {"phone", "phonenumber", "telefono", "tel", "celular", "movil", "mobile", "numero", "number", "whatsapp", "cel"},
	"name":      {"name", "nombre", "fullname", "nombrecompleto", "contacto", "contact"},
	"tags":      {"tags", "tag", "etiquetas", "etiqueta", "labels", "grupo", "grupos"},
	"opted_out": {"optedout", "optout", "baja", "unsubscribed", "noenviar", "donotcontact"},
}

// RowError is a problem with one line of a CSV file.
type RowError struct {
	Line    int    `json:"line"`
	Column  string `json:"column,omitempty"`
	Value   string `json:"value,omitempty"`
	Message string `json:"message"`
}

// ImportResult counts what an import did.
type ImportResult struct {
	Rows     int `json:"rows"`
	Created  int `json:"created"`
	Updated  int `json:"updated"`
	Repeated int `json:"repeated"` // rows whose phone appeared earlier in the same file (merged)
}

// maxReportedErrors bounds the errors listed back; the message gives the total.
const maxReportedErrors = 200

type row struct {
	line     int
	phone    string
	name     string
	tags     []string
	optedOut *bool
}

// Import reads a CSV file (comma or semicolon separated, UTF-8, header line first) into
// cliente's leads, all or nothing: if any row is wrong nothing is written and the error's
// Details list every bad row with its line number. An existing lead (same phone) gets the
// file's name when the file has one, the union of tags, and the opt-out flag when the file
// has that column.
func (s *Service) Import(ctx context.Context, cliente string, r io.Reader, opt ImportOptions) (ImportResult, error) {
	rows, errs := parseCSV(r, opt)
	if len(errs) > 0 {
		details := errs
		if len(details) > maxReportedErrors {
			details = details[:maxReportedErrors]
		}
		noun := "rows have errors"
		if len(errs) == 1 {
			noun = "row has an error"
		}
		return ImportResult{}, &hub.Error{Code: hub.CodeInvalid, Details: details,
			Message: fmt.Sprintf("%d %s (first at line %d); nothing was imported", len(errs), noun, errs[0].Line)}
	}
	res := ImportResult{Rows: len(rows)}
	now := hub.Millis(s.now())
	seen := map[string]bool{}
	err := s.db.InTx(ctx, func(tx *store.Tx) error {
		for _, rw := range rows {
			if seen[rw.phone] {
				res.Repeated++
			}
			seen[rw.phone] = true
			var id int64
			var name, tagsJSON string
			var opted int
			err := tx.QueryRow(ctx, `SELECT id, name, tags, opted_out FROM leads WHERE cliente_id = ? AND phone = ?`, cliente, rw.phone).
				Scan(&id, &name, &tagsJSON, &opted)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				tags, _ := json.Marshal(rw.tags)
				o := 0
				if rw.optedOut != nil && *rw.optedOut {
					o = 1
				}
				if _, err := tx.Exec(ctx, `INSERT INTO leads (cliente_id, phone, name, source, tags, opted_out, created_at, updated_at)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, cliente, rw.phone, rw.name, SourceCSV, string(tags), o, now, now); err != nil {
					return fmt.Errorf("import line %d: %w", rw.line, err)
				}
				if !seen[rw.phone+"\x00created"] {
					res.Created++
					seen[rw.phone+"\x00created"] = true
				}
			case err != nil:
				return fmt.Errorf("import line %d: %w", rw.line, err)
			default:
				var tags []string
				json.Unmarshal([]byte(tagsJSON), &tags)
				for _, t := range rw.tags {
					if !slices.Contains(tags, t) {
						tags = append(tags, t)
					}
				}
				slices.Sort(tags)
				if tags == nil {
					tags = []string{}
				}
				if rw.name != "" {
					name = rw.name
				}
				if rw.optedOut != nil {
					opted = boolInt(*rw.optedOut)
				}
				tj, _ := json.Marshal(tags)
				if _, err := tx.Exec(ctx, `UPDATE leads SET name = ?, tags = ?, opted_out = ?, updated_at = ? WHERE id = ?`,
					name, string(tj), opted, now, id); err != nil {
					return fmt.Errorf("import line %d: %w", rw.line, err)
				}
				if !seen[rw.phone+"\x00created"] && !seen[rw.phone+"\x00updated"] {
					res.Updated++
					seen[rw.phone+"\x00updated"] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, err
	}
	s.log.Info("contacts imported", "cliente_id", cliente, "rows", res.Rows, "created", res.Created, "updated", res.Updated)
	return res, nil
}

func parseCSV(r io.Reader, opt ImportOptions) ([]row, []RowError) {
	br := bufio.NewReader(r)
	// Excel writes a byte-order mark; a Spanish-locale Excel separates with semicolons.
	if b, _ := br.Peek(3); bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		br.Discard(3)
	}
	first, _ := br.Peek(4096)
	firstLine, _, _ := bytes.Cut(first, []byte("\n"))
	cr := csv.NewReader(br)
	if bytes.Count(firstLine, []byte(";")) > bytes.Count(firstLine, []byte(",")) {
		cr.Comma = ';'
	}
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false

	header, err := cr.Read()
	if err == io.EOF {
		return nil, []RowError{{Line: 1, Message: "the file is empty; a header line (such as phone,name,tags) is expected"}}
	}
	if err != nil {
		return nil, []RowError{csvError(err, 1)}
	}
	if !utf8.ValidString(strings.Join(header, "")) {
		return nil, []RowError{{Line: 1, Message: "the file is not UTF-8 text; save it as CSV UTF-8"}}
	}
	cols, errs := mapColumns(header, opt.Columns)
	if len(errs) > 0 {
		return nil, errs
	}
	var rows []row
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			// A broken quote leaves the reader lost: report it and stop.
			errs = append(errs, csvError(err, line))
			break
		}
		if len(rows)+len(errs) >= MaxImportRows {
			errs = append(errs, RowError{Line: line, Message: fmt.Sprintf("the file has more than %d rows; split it", MaxImportRows)})
			break
		}
		if blank(rec) {
			continue
		}
		if len(rec) != len(header) {
			errs = append(errs, RowError{Line: line, Message: fmt.Sprintf("has %d fields, the header has %d", len(rec), len(header))})
			continue
		}
		rw, rerrs := parseRow(rec, line, cols, header, opt.Region)
		if len(rerrs) > 0 {
			errs = append(errs, rerrs...)
			continue
		}
		rows = append(rows, rw)
	}
	if len(errs) == 0 && len(rows) == 0 {
		errs = append(errs, RowError{Line: 2, Message: "the file has a header but no rows"})
	}
	return rows, errs
}

func csvError(err error, line int) RowError {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return RowError{Line: pe.Line, Message: fmt.Sprintf("malformed CSV: %v", pe.Err)}
	}
	return RowError{Line: line, Message: fmt.Sprintf("cannot read the file: %v", err)}
}

func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

func normHeader(h string) string {
	r := strings.NewReplacer("á", "a", "é", "e", "í", "i", "ó", "o", "ú", "u", "ñ", "n", " ", "", "_", "", "-", "", ".", "")
	return r.Replace(strings.ToLower(strings.TrimSpace(h)))
}

// mapColumns finds each field's column index (-1 when absent).
func mapColumns(header []string, explicit map[string]string) (map[string]int, []RowError) {
	cols := map[string]int{"phone": -1, "name": -1, "tags": -1, "opted_out": -1}
	var errs []RowError
	for field, name := range explicit {
		if _, ok := cols[field]; !ok {
			errs = append(errs, RowError{Line: 1, Message: fmt.Sprintf("unknown field %q in the column mapping (use phone, name, tags or opted_out)", field)})
			continue
		}
		idx := slices.IndexFunc(header, func(h string) bool { return strings.EqualFold(strings.TrimSpace(h), strings.TrimSpace(name)) })
		if idx < 0 {
			errs = append(errs, RowError{Line: 1, Column: name, Message: fmt.Sprintf("the header has no column %q (mapped to %s)", name, field)})
			continue
		}
		cols[field] = idx
	}
	for field, aliases := range headerAliases {
		if cols[field] >= 0 || explicit[field] != "" {
			continue
		}
		for i, h := range header {
			if slices.Contains(aliases, normHeader(h)) {
				cols[field] = i
				break
			}
		}
	}
	if cols["phone"] < 0 && len(errs) == 0 {
		errs = append(errs, RowError{Line: 1, Message: fmt.Sprintf("no phone column in the header %q: name one phone (or telefono, celular, whatsapp), or map it with ?phone=COLUMN", strings.Join(header, ","))})
	}
	return cols, errs
}

func parseRow(rec []string, line int, cols map[string]int, header []string, region string) (row, []RowError) {
	rw := row{line: line, tags: []string{}}
	var errs []RowError
	field := func(f string) (string, bool) {
		if i := cols[f]; i >= 0 {
			return strings.TrimSpace(rec[i]), true
		}
		return "", false
	}
	colName := func(f string) string { return strings.TrimSpace(header[cols[f]]) }
	raw, _ := field("phone")
	phone, err := Normalize(raw, region, true)
	if err != nil {
		errs = append(errs, RowError{Line: line, Column: colName("phone"), Value: raw, Message: err.Error()})
	}
	rw.phone = phone
	if v, ok := field("name"); ok {
		if utf8.RuneCountInString(v) > 200 {
			errs = append(errs, RowError{Line: line, Column: colName("name"), Message: "name is longer than 200 characters"})
		}
		rw.name = v
	}
	if v, ok := field("tags"); ok && v != "" {
		parts := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' || r == '|' })
		tags, err := cleanTags(parts)
		if err != nil {
			errs = append(errs, RowError{Line: line, Column: colName("tags"), Value: v, Message: err.Error()})
		}
		rw.tags = tags
	}
	if v, ok := field("opted_out"); ok {
		b, known := parseBool(v)
		if !known {
			errs = append(errs, RowError{Line: line, Column: colName("opted_out"), Value: v, Message: "must be yes or no (si/no, true/false, 1/0, or empty)"})
		}
		rw.optedOut = &b
	}
	return rw, errs
}

func parseBool(s string) (value, known bool) {
	switch normHeader(s) {
	case "", "0", "no", "n", "false", "f":
		return false, true
	case "1", "yes", "y", "si", "sí", "s", "true", "t", "x":
		return true, true
	}
	return false, false
}
