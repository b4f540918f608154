// Package tools pins the build tools fedprop's Makefile runs (protoc plugins, staticcheck,
// gosec) in a module of their own, so that the product's module graph holds only what the
// product runs: `make proto` and `make lint` build them from here into .tools/.
package tools
