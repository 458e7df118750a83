package main

import (
	"fmt"
	"sort"
)

// median of xs (0 for none); the mean of the middle two for an even count.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func minMax(xs []float64) (lo, hi float64) {
	for i, x := range xs {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

func pluck[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// cell renders "median (min–max)" of xs with format f, or just the value
// for a single run.
func cell(xs []float64, f string) string {
	if len(xs) == 0 {
		return "—"
	}
	m := median(xs)
	if len(xs) == 1 {
		return fmt.Sprintf(f, m)
	}
	lo, hi := minMax(xs)
	return fmt.Sprintf(f+" ("+f+"–"+f+")", m, lo, hi)
}
