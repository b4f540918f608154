package modelfile

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"unicode"
)

// document is Document without its JSON methods: the fields as encoding/json reads and
// writes them, before (or after) rekey.
type document Document

var documentType = reflect.TypeFor[document]()

// MarshalJSON writes the document with snake_case keys throughout. Its own fields name their
// keys in their tags; the embedded schema and standardization are dataset types, whose Go
// field names encoding/json would use as keys ("Name", "CSV", "Mean"), and which dataset
// cannot give JSON tags: the schema's JSON is hashed (task.SchemaHash) and stored, and must
// stay as it is. Their keys here are the ones the schema file uses (the fields' yaml tags), or
// the Go name in snake_case for a field without one ("positive_aliases", "mean").
func (d Document) MarshalJSON() ([]byte, error) {
	raw, err := json.Marshal(document(d))
	if err != nil {
		return nil, err
	}
	return rekey(raw, documentType, toWire)
}

// UnmarshalJSON reads a document strictly (an unknown key is an error) with the keys
// MarshalJSON writes, and also with the Go field names that documents written before it
// have in their schema and standardization ("Name", "CSV", "SkipLines", "Mean"). Keys match
// whatever their case, as encoding/json matches them.
func (d *Document) UnmarshalJSON(data []byte) error {
	raw, err := rekey(data, documentType, fromWire)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var plain document
	if err := dec.Decode(&plain); err != nil {
		return err
	}
	*d = Document(plain)
	return nil
}

// direction is which way rekey renames keys.
type direction int

const (
	toWire   direction = iota // encoding/json's keys to model.json's
	fromWire                  // model.json's (or encoding/json's, in any case) to encoding/json's
)

// maxRekeyDepth bounds the walk over types; the document's types are a few levels deep.
const maxRekeyDepth = 16

// rekey renames the object keys of the JSON value raw, which encodes (or decodes into) type
// t, where a struct field's key in model.json differs from encoding/json's; map keys and
// values of types that encode themselves are left as they are. Numbers and strings are
// copied as written, so that no float changes by a bit. A value of the wrong kind for t is
// left for encoding/json to refuse.
func rekey(raw []byte, t reflect.Type, dir direction) ([]byte, error) {
	return rekeyDepth(raw, t, dir, 0)
}

func rekeyDepth(raw []byte, t reflect.Type, dir direction, depth int) ([]byte, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > maxRekeyDepth || !needsRekey(t, 0) {
		return raw, nil
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return raw, nil
	}
	isObject := trimmed[0] == '{' && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map)
	isArray := trimmed[0] == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array)
	if !isObject && !isArray {
		return raw, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil { // the opening bracket
		return nil, err
	}
	var out bytes.Buffer
	if isArray {
		out.WriteByte('[')
		for i := 0; dec.More(); i++ {
			var elem json.RawMessage
			if err := dec.Decode(&elem); err != nil {
				return nil, err
			}
			elem2, err := rekeyDepth(elem, t.Elem(), dir, depth+1)
			if err != nil {
				return nil, err
			}
			if i > 0 {
				out.WriteByte(',')
			}
			out.Write(elem2)
		}
		out.WriteByte(']')
		return out.Bytes(), nil
	}
	var fields []fieldKey
	if t.Kind() == reflect.Struct {
		fields = fieldKeys(t, 0)
	}
	out.WriteByte('{')
	for i := 0; dec.More(); i++ {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, err
		}
		var vt reflect.Type // the value's type; nil for a key no field reads
		if t.Kind() == reflect.Map {
			vt = t.Elem() // any key, kept as it is
		} else if f, ok := lookupField(fields, key, dir); ok {
			key, vt = f.key(dir), f.typ
		}
		if vt != nil {
			if val, err = rekeyDepth(val, vt, dir, depth+1); err != nil {
				return nil, err
			}
		}
		if i > 0 {
			out.WriteByte(',')
		}
		k, err := json.Marshal(key)
		if err != nil {
			return nil, err
		}
		out.Write(k)
		out.WriteByte(':')
		out.Write(val)
	}
	out.WriteByte('}')
	return out.Bytes(), nil
}

// fieldKey is a struct field's key as encoding/json spells it and as model.json does.
type fieldKey struct {
	json, wire string
	typ        reflect.Type
}

func (f fieldKey) key(dir direction) string {
	if dir == toWire {
		return f.wire
	}
	return f.json
}

// lookupField finds the field a key names: written by encoding/json (toWire), exactly; read
// from a document (fromWire), by model.json's key or encoding/json's, exactly or else in any
// case, as encoding/json itself matches keys.
func lookupField(fields []fieldKey, key string, dir direction) (fieldKey, bool) {
	for _, f := range fields {
		if key == f.json || (dir == fromWire && key == f.wire) {
			return f, true
		}
	}
	if dir == fromWire {
		for _, f := range fields {
			if strings.EqualFold(key, f.json) || strings.EqualFold(key, f.wire) {
				return f, true
			}
		}
	}
	return fieldKey{}, false
}

// fieldKeys lists the keys of struct type t as encoding/json encodes it: exported fields not
// tagged "-", with the fields of an embedded struct without a key of its own promoted.
func fieldKeys(t reflect.Type, depth int) []fieldKey {
	var out []fieldKey
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && depth < maxRekeyDepth {
				out = append(out, fieldKeys(ft, depth+1)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, fieldKey{json: name, wire: wireName(f), typ: f.Type})
	}
	return out
}

// wireName is a field's key in model.json: its JSON tag's name when it has one, else its key
// in the YAML the type is read from (a schema file), else its Go name in snake_case.
func wireName(f reflect.StructField) string {
	if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" {
		return name
	}
	if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name != "-" {
		return name
	}
	return snakeCase(f.Name)
}

// snakeCase spells a Go name in snake_case, keeping initialisms whole: PositiveAliases is
// positive_aliases, CSV csv, HTTPServer http_server.
func snakeCase(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 {
			prevLower := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || (unicode.IsUpper(r[i-1]) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

var (
	jsonMarshalerType   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
)

// needsRekey reports whether a value of type t may hold a key that model.json spells
// otherwise than encoding/json: a struct field whose wire name differs, at any depth. Types
// that encode themselves (time.Time, metrics.Summary) are written as they write themselves.
func needsRekey(t reflect.Type, depth int) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > maxRekeyDepth {
		return false
	}
	pt := reflect.PointerTo(t)
	if t.Implements(jsonMarshalerType) || pt.Implements(jsonMarshalerType) || pt.Implements(jsonUnmarshalerType) ||
		t.Implements(textMarshalerType) || pt.Implements(textMarshalerType) {
		return false
	}
	switch t.Kind() {
	case reflect.Struct:
		for _, f := range fieldKeys(t, 0) {
			if f.json != f.wire || needsRekey(f.typ, depth+1) {
				return true
			}
		}
	case reflect.Map, reflect.Slice, reflect.Array:
		return needsRekey(t.Elem(), depth+1)
	}
	return false
}
