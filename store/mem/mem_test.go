package mem_test

import (
	"testing"

	"github.com/fedprop/fedprop/coordinator"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) coordinator.Store { return mem.New() })
}
