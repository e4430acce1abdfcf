package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// percentile returns the p-th percentile (0–100) of ds by the nearest-rank
// method; 0 for no samples. ds is not modified.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// median returns the median of vs (the mean of the middle two for an
// even count) and NaN for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// count names a level: 0, 1k, 10k, 100k, 1500.
func count(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// number formats v with thousands separators and a precision that suits
// its size.
func number(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case math.Abs(v) >= 100:
		return group(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// group inserts thousands separators into an integer string.
func group(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// cell is "median (min–max)", the median alone for one run, "—" for none.
func cell(vs []float64) string {
	if len(vs) == 0 {
		return "—"
	}
	m := number(median(vs))
	if len(vs) == 1 {
		return m
	}
	return fmt.Sprintf("%s (%s–%s)", m, number(slices.Min(vs)), number(slices.Max(vs)))
}

// percent formats a fraction; "" when not known.
func percent(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return ""
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

// metric is one row of the table.
type metric struct {
	Name    string `json:"name"`
	Unit    string `json:"unit"`
	Ceiling string `json:"ceiling,omitempty"` // the row this rate is a fraction of
}

// recorder collects the value of every metric per daemon and run, in the
// order metrics were first seen. Safe for concurrent use.
type recorder struct {
	mu      sync.Mutex
	metrics []metric
	index   map[string]int
	vals    map[string]map[string][]float64 // daemon → metric → runs
	notes   []string
}

func newRecorder() *recorder {
	return &recorder{index: map[string]int{}, vals: map[string]map[string][]float64{}}
}

func (r *recorder) add(daemon, name, unit, ceiling string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.index[name]; !ok {
		r.index[name] = len(r.metrics)
		r.metrics = append(r.metrics, metric{Name: name, Unit: unit, Ceiling: ceiling})
	}
	if r.vals[daemon] == nil {
		r.vals[daemon] = map[string][]float64{}
	}
	r.vals[daemon][name] = append(r.vals[daemon][name], v)
}

func (r *recorder) addNote(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, s)
}

// row is a metric with its summary, as the table and the JSON show it.
type row struct {
	metric
	Berth          []float64 `json:"berth"`
	Miniupnpd      []float64 `json:"miniupnpd"`
	BerthMedian    float64   `json:"berth_median"`
	MiniMedian     float64   `json:"miniupnpd_median"`
	Ratio          float64   `json:"ratio_berth_to_miniupnpd"`
	BerthOfCeiling float64   `json:"berth_fraction_of_ceiling"`
	MiniOfCeiling  float64   `json:"miniupnpd_fraction_of_ceiling"`
}

// rows summarises every metric.
func (r *recorder) rows() []row {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]row, 0, len(r.metrics))
	for _, m := range r.metrics {
		w := row{metric: m, Berth: r.vals[berth][m.Name], Miniupnpd: r.vals[mini][m.Name]}
		w.BerthMedian, w.MiniMedian = median(w.Berth), median(w.Miniupnpd)
		w.Ratio = w.BerthMedian / w.MiniMedian
		w.BerthOfCeiling, w.MiniOfCeiling = math.NaN(), math.NaN()
		if m.Ceiling != "" {
			w.BerthOfCeiling = w.BerthMedian / median(r.vals[berth][m.Ceiling])
			w.MiniOfCeiling = w.MiniMedian / median(r.vals[mini][m.Ceiling])
		}
		out = append(out, w)
	}
	return out
}

// writeTable prints rows as an aligned table; markdown adds pipes.
func writeTable(w io.Writer, rows []row, withMini, markdown bool) error {
	head := []string{"metric", "unit", "berth median (min–max)"}
	if withMini {
		head = append(head, "miniupnpd median (min–max)", "berth/miniupnpd")
	}
	head = append(head, "of ceiling (berth"+map[bool]string{true: " / miniupnpd)", false: ")"}[withMini])
	lines := [][]string{head}
	for _, r := range rows {
		l := []string{r.Name, r.Unit, cell(r.Berth)}
		if withMini {
			ratio := ""
			if !math.IsNaN(r.Ratio) && !math.IsInf(r.Ratio, 0) {
				ratio = fmt.Sprintf("%.2f", r.Ratio)
			}
			l = append(l, cell(r.Miniupnpd), ratio)
		}
		frac := percent(r.BerthOfCeiling)
		if withMini && frac != "" {
			if m := percent(r.MiniOfCeiling); m != "" {
				frac += " / " + m
			}
		}
		lines = append(lines, append(l, frac))
	}
	if markdown {
		var b strings.Builder
		for i, l := range lines {
			b.WriteString("| " + strings.Join(l, " | ") + " |\n")
			if i == 0 {
				b.WriteString("|" + strings.Repeat("---|", len(l)) + "\n")
			}
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, l := range lines {
		fmt.Fprintln(tw, strings.Join(l, "\t"))
	}
	return tw.Flush()
}
