package dashboard

import (
	"embed"
	"fmt"
	"html/template"
	"net/url"
	"time"

	"github.com/meterdb/meterdb"
)

// embedded holds the page templates and the static assets (style sheet,
// icon): the dashboard loads nothing from elsewhere.
//
//go:embed templates/*.html assets
var embedded embed.FS

var funcs = template.FuncMap{
	"unix":     func(t time.Time) int64 { return t.Unix() },
	"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"hour":     func(t time.Time) string { return t.UTC().Format("Jan 2 15:04") },
	"day":      func(t time.Time) string { return t.UTC().Format("Mon Jan 2") },
	"coord":    fmtFloat,
	"pathesc":  url.PathEscape,
	"rate":     func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"bytes":    humanBytes,
	"duration": func(d time.Duration) string { return d.Round(time.Second).String() },
	"inc":      func(i int) int { return i + 1 },
	"plural": func(n any, one, many string) string {
		if fmt.Sprint(n) == "1" {
			return one
		}
		return many
	},
	"cells": func(ts ...total) []total { return ts },
	"table": func(id, unit string, rows []meterdb.Summary) windowTable {
		return windowTable{ID: id, Unit: unit, Rows: rows}
	},
}

// windowTable is the data of the "windows" template: a table of summaries.
type windowTable struct {
	ID, Unit string
	Rows     []meterdb.Summary
}

// parseTemplates parses each page together with the shared layout.
func parseTemplates() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range []string{"overview", "meter", "customer", "login", "error"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(embedded, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: parsing templates: %w", err)
		}
		pages[name] = t
	}
	return pages, nil
}

// humanBytes formats n bytes with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
