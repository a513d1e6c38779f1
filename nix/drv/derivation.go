// Package drv holds Nix derivations: their types, the canonical ATerm printer, hash modulo, and the output and .drv store paths.
package drv

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Output is one output of a derivation, with its fields exactly as written in
// the ATerm: Path is an absolute store path or "", HashAlgo is "", "<algo>" or
// "r:<algo>", Hash is "", base16 digest or "impure".
type Output struct {
	Name     string
	Path     string
	HashAlgo string
	Hash     string
}

// InputDrv is one input derivation (absolute .drv store path) and the names of
// the outputs used from it, sorted and unique.
type InputDrv struct {
	Path    string
	Outputs []string
}

// EnvVar is one environment entry of a derivation.
type EnvVar struct {
	Key   string
	Value string
}

// Derivation is a store derivation as its ATerm holds it. Outputs, InputDrvs,
// InputSrcs and Env are sorted by name, path or key, with no duplicates; Args
// keep their order. Only such canonical values can be printed.
type Derivation struct {
	Outputs   []Output
	InputDrvs []InputDrv
	InputSrcs []string
	Platform  string
	Builder   string
	Args      []string
	Env       []EnvVar
}

// ErrNotCanonical is wrapped by every error saying that a Derivation is not in
// the one form that Nix prints (order, duplicates, forbidden bytes).
var ErrNotCanonical = errors.New("derivation is not canonical")

func notCanonical(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotCanonical, fmt.Sprintf(format, args...))
}

// Canonical reports whether d is in the form Nix prints: every set and map
// strictly increasing (sorted, no duplicates), every input derivation with at
// least one output, and no NUL byte in any string.
func (d *Derivation) Canonical() error {
	for i, o := range d.Outputs {
		if i > 0 && d.Outputs[i-1].Name >= o.Name {
			return notCanonical("output %q is not after %q", o.Name, d.Outputs[i-1].Name)
		}
		if err := noNUL("output", o.Name, o.Path, o.HashAlgo, o.Hash); err != nil {
			return err
		}
	}
	for i, in := range d.InputDrvs {
		if i > 0 && d.InputDrvs[i-1].Path >= in.Path {
			return notCanonical("input derivation %q is not after %q", in.Path, d.InputDrvs[i-1].Path)
		}
		if len(in.Outputs) == 0 {
			return notCanonical("input derivation %q names no outputs", in.Path)
		}
		if err := sortedSet("outputs of input derivation "+in.Path, in.Outputs); err != nil {
			return err
		}
		if err := noNUL("input derivation", in.Path); err != nil {
			return err
		}
	}
	if err := sortedSet("input sources", d.InputSrcs); err != nil {
		return err
	}
	if err := noNUL("system/builder", d.Platform, d.Builder); err != nil {
		return err
	}
	if err := noNUL("argument", d.Args...); err != nil {
		return err
	}
	for i, e := range d.Env {
		if i > 0 && d.Env[i-1].Key >= e.Key {
			return notCanonical("env key %q is not after %q", e.Key, d.Env[i-1].Key)
		}
		if err := noNUL("env", e.Key, e.Value); err != nil {
			return err
		}
	}
	return nil
}

func sortedSet(what string, s []string) error {
	for i, v := range s {
		if i > 0 && s[i-1] >= v {
			return notCanonical("%s: %q is not after %q", what, v, s[i-1])
		}
	}
	return noNUL(what, s...)
}

func noNUL(what string, s ...string) error {
	for _, v := range s {
		if strings.IndexByte(v, 0) >= 0 {
			return notCanonical("%s string %q contains a NUL byte", what, v)
		}
	}
	return nil
}

// Getenv returns the value of env entry key and whether it exists.
func (d *Derivation) Getenv(key string) (string, bool) {
	i, ok := slices.BinarySearchFunc(d.Env, key, func(e EnvVar, k string) int { return strings.Compare(e.Key, k) })
	if !ok {
		return "", false
	}
	return d.Env[i].Value, true
}

// Output returns the output called name.
func (d *Derivation) Output(name string) (Output, bool) {
	i, ok := slices.BinarySearchFunc(d.Outputs, name, func(o Output, n string) int { return strings.Compare(o.Name, n) })
	if !ok {
		return Output{}, false
	}
	return d.Outputs[i], true
}
