package drv

import (
	"fmt"
	"strings"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// Kind is the kind of a derivation output, told by which ATerm fields are set.
type Kind uint8

// The output kinds. Only InputAddressed and FixedOutput have paths that can be
// computed before building; the others are parsed and typed but not hashed.
const (
	InputAddressed Kind = iota + 1 // path set, hashAlgo and hash empty
	FixedOutput                    // path, hashAlgo and base16 hash set
	FloatingCA                     // only hashAlgo set (xp ca-derivations)
	Deferred                       // all empty: input-addressed, waiting for floating inputs
	Impure                         // hashAlgo set, hash "impure" (xp impure-derivations)
)

var kindNames = [...]string{InputAddressed: "input-addressed", FixedOutput: "fixed-output",
	FloatingCA: "floating content-addressed", Deferred: "deferred", Impure: "impure"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// OutputInfo is an output with its ATerm fields parsed and typed.
type OutputInfo struct {
	Name   string
	Kind   Kind
	Path   storepath.Path          // InputAddressed and FixedOutput only
	Method storepath.FileIngestion // FixedOutput, FloatingCA, Impure: Flat or Recursive
	Hash   nixhash.Hash            // FixedOutput: the expected content hash
	Algo   nixhash.Algo            // FixedOutput, FloatingCA, Impure
}

// Info types the output against store directory dir.
func (o Output) Info(dir storepath.Dir) (OutputInfo, error) {
	info := OutputInfo{Name: o.Name}
	if err := storepath.ValidateName(o.Name); err != nil {
		return info, fmt.Errorf("output name %q: %w", o.Name, err)
	}
	if o.HashAlgo == "" {
		if o.Hash != "" {
			return info, fmt.Errorf("output %q has hash %q but no hash algorithm", o.Name, o.Hash)
		}
		if o.Path == "" {
			info.Kind = Deferred
			return info, nil
		}
		info.Kind = InputAddressed
		return info, info.setPath(dir, o.Path)
	}
	var err error
	if info.Method, info.Algo, err = parseHashAlgo(o.HashAlgo); err != nil {
		return info, fmt.Errorf("output %q: %w", o.Name, err)
	}
	switch o.Hash {
	case "impure", "":
		info.Kind = Impure
		if o.Hash == "" {
			info.Kind = FloatingCA
		}
		if o.Path != "" {
			return info, fmt.Errorf("%s output %q has a path %q, which it cannot have before it is built", info.Kind, o.Name, o.Path)
		}
		return info, nil
	}
	info.Kind = FixedOutput
	if info.Hash, err = nixhash.ParseAs(o.Hash, info.Algo); err != nil || info.Hash.Base16() != o.Hash {
		return info, fmt.Errorf("fixed output %q: hash %q is not a lowercase base16 %s digest", o.Name, o.Hash, info.Algo)
	}
	return info, info.setPath(dir, o.Path)
}

func (info *OutputInfo) setPath(dir storepath.Dir, abs string) error {
	p, err := dir.Parse(abs)
	if err != nil {
		return fmt.Errorf("%s output %q: %w", info.Kind, info.Name, err)
	}
	info.Path = p
	return nil
}

// parseHashAlgo reads an ATerm hashAlgo field: "<algo>" (flat) or "r:<algo>".
func parseHashAlgo(s string) (storepath.FileIngestion, nixhash.Algo, error) {
	m := storepath.Flat
	if rest, ok := strings.CutPrefix(s, "r:"); ok {
		m, s = storepath.Recursive, rest
	} else if strings.Contains(s, ":") {
		return 0, 0, fmt.Errorf("hash algorithm %q: only flat and r: (NAR) methods are supported", s)
	}
	a, err := nixhash.ParseAlgo(s)
	return m, a, err
}

// Kind returns the one kind that all outputs of d share, after typing each
// output. It refuses a derivation without outputs, with outputs of mixed
// kinds, and a fixed-output derivation with an output other than "out".
func (d *Derivation) Kind(dir storepath.Dir) (Kind, []OutputInfo, error) {
	if len(d.Outputs) == 0 {
		return 0, nil, fmt.Errorf("derivation has no outputs")
	}
	infos := make([]OutputInfo, len(d.Outputs))
	for i, o := range d.Outputs {
		var err error
		if infos[i], err = o.Info(dir); err != nil {
			return 0, nil, err
		}
		if infos[i].Kind != infos[0].Kind {
			return 0, nil, fmt.Errorf("output %q is %s but output %q is %s: all outputs must be of one kind",
				o.Name, infos[i].Kind, infos[0].Name, infos[0].Kind)
		}
	}
	k := infos[0].Kind
	if k == FixedOutput && (len(infos) != 1 || infos[0].Name != "out") {
		return 0, nil, fmt.Errorf("a fixed-output derivation must have exactly one output, called \"out\"")
	}
	return k, infos, nil
}

// Validate checks d against store directory dir: canonical form, typed
// outputs of one kind, input derivations that are .drv store paths with
// valid output names, and input sources that are store paths.
func (d *Derivation) Validate(dir storepath.Dir) error {
	if err := d.Canonical(); err != nil {
		return err
	}
	if _, _, err := d.Kind(dir); err != nil {
		return err
	}
	if _, err := d.References(dir); err != nil {
		return err
	}
	for _, in := range d.InputDrvs {
		for _, o := range in.Outputs {
			if err := storepath.ValidateName(o); err != nil {
				return fmt.Errorf("input derivation %s: output name %q: %w", in.Path, o, err)
			}
		}
	}
	return nil
}

// References returns the references the .drv file has in the store: its input
// derivations and input sources, sorted and unique. It refuses an input
// derivation path that is not a .drv store path and a source that is not a
// store path.
func (d *Derivation) References(dir storepath.Dir) ([]storepath.Path, error) {
	refs := make([]storepath.Path, 0, len(d.InputDrvs)+len(d.InputSrcs))
	for _, in := range d.InputDrvs {
		p, err := dir.Parse(in.Path)
		if err != nil {
			return nil, fmt.Errorf("input derivation: %w", err)
		}
		if !p.IsDerivation() {
			return nil, fmt.Errorf("input derivation %s does not end in .drv", in.Path)
		}
		refs = append(refs, p)
	}
	for _, s := range d.InputSrcs {
		p, err := dir.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("input source: %w", err)
		}
		refs = append(refs, p)
	}
	return refs, nil
}

// NameOf returns the derivation name of a .drv store path: its name without ".drv".
func NameOf(drvPath storepath.Path) (string, error) {
	name, ok := strings.CutSuffix(drvPath.Name(), ".drv")
	if !ok || drvPath.IsZero() {
		return "", fmt.Errorf("%q is not a derivation path (.drv)", drvPath.Base())
	}
	return name, storepath.ValidateName(name)
}
