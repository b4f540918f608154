package export

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file writes the few ONNX protobuf messages an exported model needs, field by field, with
// the field numbers of onnx.proto (onnx/onnx.proto in the ONNX repository, IR version 7 and
// later). No ONNX Go package is a dependency; protowire only frames fields.

// ONNX TensorProto.DataType values used by the export.
const (
	onnxUint8  = 2
	onnxInt64  = 7
	onnxString = 8
	onnxDouble = 11
)

// ONNX AttributeProto.AttributeType values used by the export.
const (
	attrFloat   = 1
	attrInt     = 2
	attrString  = 3
	attrTensor  = 4
	attrInts    = 7
	attrStrings = 8
)

// pbuf is a protobuf message under construction.
type pbuf []byte

func (b *pbuf) str(field protowire.Number, s string) {
	*b = protowire.AppendTag(*b, field, protowire.BytesType)
	*b = protowire.AppendString(*b, s)
}

func (b *pbuf) bytes(field protowire.Number, v []byte) {
	*b = protowire.AppendTag(*b, field, protowire.BytesType)
	*b = protowire.AppendBytes(*b, v)
}

func (b *pbuf) msg(field protowire.Number, m pbuf) { b.bytes(field, m) }

func (b *pbuf) varint(field protowire.Number, v int64) {
	*b = protowire.AppendTag(*b, field, protowire.VarintType)
	*b = protowire.AppendVarint(*b, uint64(v)) // #nosec G115 -- protobuf writes int64 as its two's complement
}

func (b *pbuf) float32(field protowire.Number, v float32) {
	*b = protowire.AppendTag(*b, field, protowire.Fixed32Type)
	*b = protowire.AppendFixed32(*b, math.Float32bits(v))
}

// packedVarints writes a packed repeated int64 field.
func (b *pbuf) packedVarints(field protowire.Number, vs []int64) {
	var p []byte
	for _, v := range vs {
		p = protowire.AppendVarint(p, uint64(v)) // #nosec G115 -- protobuf writes int64 as its two's complement
	}
	b.bytes(field, p)
}

// packedDoubles writes a packed repeated double field.
func (b *pbuf) packedDoubles(field protowire.Number, vs []float64) {
	p := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		p = protowire.AppendFixed64(p, math.Float64bits(v))
	}
	b.bytes(field, p)
}

// ModelProto fields.
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelDomain          = 4
	modelModelVersion    = 5
	modelDocString       = 6
	modelGraph           = 7
	modelOpsetImport     = 8
	modelMetadataProps   = 14
)

// GraphProto fields.
const (
	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphDocString   = 10
	graphInput       = 11
	graphOutput      = 12
)

// NodeProto fields.
const (
	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7
)

// AttributeProto fields.
const (
	attributeName    = 1
	attributeF       = 2
	attributeI       = 3
	attributeS       = 4
	attributeT       = 5
	attributeInts    = 8
	attributeStrings = 9
	attributeType    = 20
)

// TensorProto fields.
const (
	tensorDims       = 1
	tensorDataType   = 2
	tensorInt64Data  = 7
	tensorName       = 8
	tensorRawData    = 9
	tensorDoubleData = 10
)

// ValueInfoProto, TypeProto, TypeProto.Tensor, TensorShapeProto and its Dimension fields.
const (
	valueInfoName      = 1
	valueInfoType      = 2
	valueInfoDocString = 3
	typeTensorType     = 1
	tensorTypeElemType = 1
	tensorTypeShape    = 2
	shapeDim           = 1
	dimValue           = 1
	dimParam           = 2
)

// OperatorSetIdProto and StringStringEntryProto fields.
const (
	opsetDomain  = 1
	opsetVersion = 2
	entryKey     = 1
	entryValue   = 2
)

// attribute is one NodeProto attribute.
type attribute struct {
	name    string
	typ     int64
	f       float32
	i       int64
	s       string
	t       *tensor
	ints    []int64
	strings []string
}

func (a attribute) encode() pbuf {
	var b pbuf
	b.str(attributeName, a.name)
	switch a.typ {
	case attrFloat:
		b.float32(attributeF, a.f)
	case attrInt:
		b.varint(attributeI, a.i)
	case attrString:
		b.bytes(attributeS, []byte(a.s))
	case attrTensor:
		b.msg(attributeT, a.t.encode())
	case attrInts:
		b.packedVarints(attributeInts, a.ints)
	case attrStrings:
		for _, s := range a.strings {
			b.bytes(attributeStrings, []byte(s))
		}
	}
	b.varint(attributeType, a.typ)
	return b
}

func intAttr(name string, v int64) attribute { return attribute{name: name, typ: attrInt, i: v} }

func stringsAttr(name string, v []string) attribute {
	return attribute{name: name, typ: attrStrings, strings: v}
}

// node is one NodeProto.
type node struct {
	name, opType, domain string
	inputs, outputs      []string
	attrs                []attribute
}

func (n node) encode() pbuf {
	var b pbuf
	for _, in := range n.inputs {
		b.str(nodeInput, in)
	}
	for _, out := range n.outputs {
		b.str(nodeOutput, out)
	}
	b.str(nodeName, n.name)
	b.str(nodeOpType, n.opType)
	for _, a := range n.attrs {
		b.msg(nodeAttribute, a.encode())
	}
	if n.domain != "" {
		b.str(nodeDomain, n.domain)
	}
	return b
}

// tensor is one initializer (or tensor attribute): a double, int64 or uint8 constant of the
// given shape.
type tensor struct {
	name    string
	dims    []int64
	doubles []float64
	int64s  []int64
	uint8s  []byte
}

func (t tensor) encode() pbuf {
	var b pbuf
	if len(t.dims) > 0 {
		b.packedVarints(tensorDims, t.dims)
	}
	switch {
	case t.uint8s != nil:
		b.varint(tensorDataType, onnxUint8)
		b.bytes(tensorRawData, t.uint8s)
	case t.int64s != nil:
		b.varint(tensorDataType, onnxInt64)
		b.packedVarints(tensorInt64Data, t.int64s)
	default:
		b.varint(tensorDataType, onnxDouble)
		b.packedDoubles(tensorDoubleData, t.doubles)
	}
	b.str(tensorName, t.name)
	return b
}

// valueInfo is a graph input or output: a tensor of elemType whose shape has a symbolic batch
// dimension followed by fixed ones.
type valueInfo struct {
	name, doc string
	elemType  int64
	batch     string
	dims      []int64
}

func (v valueInfo) encode() pbuf {
	var shape pbuf
	var d pbuf
	d.str(dimParam, v.batch)
	shape.msg(shapeDim, d)
	for _, n := range v.dims {
		var d pbuf
		d.varint(dimValue, n)
		shape.msg(shapeDim, d)
	}
	var tt pbuf
	tt.varint(tensorTypeElemType, v.elemType)
	tt.msg(tensorTypeShape, shape)
	var typ pbuf
	typ.msg(typeTensorType, tt)

	var b pbuf
	b.str(valueInfoName, v.name)
	b.msg(valueInfoType, typ)
	if v.doc != "" {
		b.str(valueInfoDocString, v.doc)
	}
	return b
}

// graph is a GraphProto.
type graph struct {
	name, doc      string
	nodes          []node
	initializers   []tensor
	inputs, output []valueInfo
}

func (g graph) encode() pbuf {
	var b pbuf
	for _, n := range g.nodes {
		b.msg(graphNode, n.encode())
	}
	b.str(graphName, g.name)
	for _, t := range g.initializers {
		b.msg(graphInitializer, t.encode())
	}
	if g.doc != "" {
		b.str(graphDocString, g.doc)
	}
	for _, in := range g.inputs {
		b.msg(graphInput, in.encode())
	}
	for _, out := range g.output {
		b.msg(graphOutput, out.encode())
	}
	return b
}

// opset is an OperatorSetIdProto.
type opset struct {
	domain  string
	version int64
}

// metadata is one StringStringEntryProto of ModelProto.metadata_props.
type metadata struct{ key, value string }

// modelProto is a ModelProto.
type modelProto struct {
	irVersion                     int64
	producerName, producerVersion string
	domain, doc                   string
	modelVersion                  int64
	opsets                        []opset
	graph                         graph
	metadata                      []metadata
}

func (m modelProto) encode() []byte {
	var b pbuf
	b.varint(modelIRVersion, m.irVersion)
	b.str(modelProducerName, m.producerName)
	b.str(modelProducerVersion, m.producerVersion)
	b.str(modelDomain, m.domain)
	b.varint(modelModelVersion, m.modelVersion)
	if m.doc != "" {
		b.str(modelDocString, m.doc)
	}
	b.msg(modelGraph, m.graph.encode())
	for _, o := range m.opsets {
		var ob pbuf
		if o.domain != "" {
			ob.str(opsetDomain, o.domain)
		}
		ob.varint(opsetVersion, o.version)
		b.msg(modelOpsetImport, ob)
	}
	for _, kv := range m.metadata {
		var e pbuf
		e.str(entryKey, kv.key)
		e.str(entryValue, kv.value)
		b.msg(modelMetadataProps, e)
	}
	return b
}
