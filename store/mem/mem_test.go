package mem_test

import (
	"testing"

	"github.com/fedprop/fedprop/store"
	"github.com/fedprop/fedprop/store/mem"
	"github.com/fedprop/fedprop/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return mem.New() })
}
