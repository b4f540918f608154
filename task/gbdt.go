package task

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/fedprop/fedprop/model/gbdt"
)

// GBDTStep is what a train task of a gradient-boosted-trees run asks.
type GBDTStep int

// The steps of a tree run.
const (
	// GBDTSketch: the label sums and the quantile sketch of the numeric features
	// (gbdt.LabelSums then gbdt.SketchCounts), once, before the first tree.
	GBDTSketch GBDTStep = 1
	// GBDTHistograms: the gradient and hessian histograms of the nodes Nodes names, at the
	// margins of Model's trees and the current tree as Levels has split it so far.
	GBDTHistograms GBDTStep = 2
)

// GBDTSpec is the tree part of a train task. Everything a client needs to answer is in it, so
// that a client that restarts, or joins mid-tree, answers as one that saw every step.
type GBDTSpec struct {
	Step   GBDTStep    `json:"step"`
	Params gbdt.Params `json:"params"`
	// Model holds the trees committed so far, the base score and the features with their bin
	// edges (nil for the sketch). A step after a tree's first level leaves it out and names it
	// by ModelDigest (gbdt.Model.Digest) instead: the client kept it from that level, and a
	// client that did not (restarted mid-tree) declines the step, so that the round starts
	// the tree again with the model in its first level. Sending the model once a tree rather
	// than once a level keeps a 100-tree run's downloads a sixth as large.
	Model       *gbdt.Model `json:"model,omitempty"`
	ModelDigest string      `json:"model_sha256,omitempty"`
	// Tree is the index of the tree being grown; Levels its splits so far, level by level.
	Tree   int            `json:"tree"`
	Levels [][]gbdt.Split `json:"levels,omitempty"`
	// Nodes are the nodes whose histograms the step asks for.
	Nodes []int32 `json:"nodes,omitempty"`
}

// MaxGBDTSpecBytes bounds the JSON a tree step is decoded from.
const MaxGBDTSpecBytes = gbdt.MaxModelBytes + 1<<20

// DecodeGBDTSpec reads a tree step as the wire carries it (JSON), refusing unknown fields, a
// document larger than MaxGBDTSpecBytes, and a model gbdt.Model.Validate refuses; every error
// wraps ErrInvalid.
func DecodeGBDTSpec(b []byte) (*GBDTSpec, error) {
	if len(b) > MaxGBDTSpecBytes {
		return nil, fmt.Errorf("%w: tree step of %d bytes, at most %d", ErrInvalid, len(b), MaxGBDTSpecBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s GBDTSpec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: tree step: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: tree step: data after the document", ErrInvalid)
	}
	switch {
	case s.Step == GBDTHistograms && s.Model == nil && (len(s.Levels) == 0 || !isSHA256Hex(s.ModelDigest)):
		return nil, fmt.Errorf("%w: tree step: a histogram step carries its model, or after the first level names it by a 64-digit model_sha256", ErrInvalid)
	case s.Model != nil && s.ModelDigest != "":
		return nil, fmt.Errorf("%w: tree step: both a model and a model_sha256", ErrInvalid)
	}
	if s.Model != nil {
		if err := s.Model.Validate(); err != nil {
			return nil, fmt.Errorf("%w: tree step: %w", ErrInvalid, err)
		}
	}
	if err := s.Params.Validate(); err != nil {
		return nil, fmt.Errorf("%w: tree step: %w", ErrInvalid, err)
	}
	return &s, nil
}

// GBDTResultLen is the length of the result a tree step asks for, given the schema's numeric
// feature count.
func GBDTResultLen(s *GBDTSpec, numeric int) (int, error) {
	switch s.Step {
	case GBDTSketch:
		return gbdt.LabelSumsLen + gbdt.SketchLen(numeric), nil
	case GBDTHistograms:
		if s.Model == nil {
			return 0, fmt.Errorf("%w: a histogram step without its model", ErrInvalid)
		}
		layout, err := gbdt.LayoutOf(s.Model.Features)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return layout.HistogramLen(len(s.Nodes)), nil
	}
	return 0, fmt.Errorf("%w: tree step %d", ErrInvalid, s.Step)
}

// GBDTSensitivity is how much one record can change the values of a tree step, in L2: the
// bound a differentially private client scales its Gaussian noise to. In the sketch a record
// adds 1 to the row count, at most 1 to the positives and 1 to one cell of each of the numeric
// features; in a level's histograms it lies in at most one of the nodes asked (they hold
// disjoint rows) and adds, in one bin of each of the model's features, a gradient |p-y| <= 1,
// a hessian p(1-p) <= 1/4 and a count of 1.
//
// numeric is the schema's numeric features, features the model's (numeric and categorical):
// the caller's own counts, never the task's word for them.
func GBDTSensitivity(step GBDTStep, numeric, features int) float64 {
	if step == GBDTSketch {
		return math.Sqrt(float64(2 + numeric))
	}
	return math.Sqrt(float64(features) * (1 + 1.0/16 + 1))
}

// isSHA256Hex reports whether s is 64 lower-case hex digits.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
