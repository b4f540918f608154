// Package confcheck checks a configuration struct as a whole, through the YAML keys its fields
// are read from: every float is finite, and (where a configuration asks for it) every duration
// is positive. Each problem names its key as the user wrote it ("run.cohort_fraction"), so that
// a NaN or an infinity typed into any key, including keys added later, is refused where it
// enters instead of surfacing as a crash or a silent no-op far away: NaN compares false with
// every bound, so a range check alone lets it through.
//
// CheckYAML and DecodeYAML do the same for the document a configuration is read from: a
// misspelt key, a key given twice or a value of the wrong type is named by its key path as
// written, with its line ("run.roudns: line 14: unknown key, did you mean run.rounds?"), where
// yaml itself would name Go types ("field roudns not found in type coordinator.RunConfig").
package confcheck

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
)

// maxDepth bounds the walk; configurations are shallow, and a cycle must not hang it.
const maxDepth = 32

var durationType = reflect.TypeFor[time.Duration]()

// Floats returns one error per float in v that is NaN or infinite, each naming its key under
// prefix (empty for the top level).
func Floats(prefix string, v any) []error {
	var errs []error
	walk(prefix, reflect.ValueOf(v), 0, func(key string, f reflect.Value) {
		if f.Type() == durationType {
			return
		}
		switch f.Kind() {
		case reflect.Float32, reflect.Float64:
			if x := f.Float(); math.IsNaN(x) || math.IsInf(x, 0) {
				errs = append(errs, fmt.Errorf("%s: must be a finite number, got %v", key, x))
			}
		}
	})
	return errs
}

// Durations returns one error per time.Duration in v that is zero or negative, each naming
// its key under prefix. A negative tick or backoff panics a ticker or spins a retry loop; a
// configuration whose zero durations mean "the default" fills them before it is checked.
func Durations(prefix string, v any) []error {
	var errs []error
	walk(prefix, reflect.ValueOf(v), 0, func(key string, f reflect.Value) {
		if f.Type() == durationType && f.Int() <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be a positive duration, got %v", key, time.Duration(f.Int())))
		}
	})
	return errs
}

// walk calls visit for every float and integer leaf of v, with its key path.
func walk(key string, v reflect.Value, depth int, visit func(key string, v reflect.Value)) {
	if !v.IsValid() || depth > maxDepth {
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walk(key, v.Elem(), depth+1, visit)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue // not a key; an embedded struct may still be inlined
			}
			name, inline := yamlKey(f)
			switch {
			case name == "-":
				continue
			case inline:
				walk(key, v.Field(i), depth+1, visit)
			default:
				walk(join(key, name), v.Field(i), depth+1, visit)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walk(fmt.Sprintf("%s[%d]", key, i), v.Index(i), depth+1, visit)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			walk(join(key, fmt.Sprint(iter.Key())), iter.Value(), depth+1, visit)
		}
	case reflect.Float32, reflect.Float64, reflect.Int64:
		visit(key, v)
	}
}

// yamlKey is the key go.yaml.in/yaml/v3 reads field f from, and whether f is inlined.
func yamlKey(f reflect.StructField) (name string, inline bool) {
	tag := f.Tag.Get("yaml")
	name, opts, _ := strings.Cut(tag, ",")
	for _, o := range strings.Split(opts, ",") {
		if o == "inline" {
			return "", true
		}
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, false
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
