package drv

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"privnix/nix/nixhash"
	"privnix/nix/storepath"
)

// HashLookup returns the unmasked hash modulo (HashModulo with mask false) of
// the derivation stored at drvPath. Callers memoise it and compute it bottom-up
// from derivations they have verified.
type HashLookup func(drvPath storepath.Path) (nixhash.Hash, error)

// HashModulo is Nix's hashDerivationModulo. For a fixed-output derivation it
// is sha256("fixed:out:<hashAlgo>:<hash>:<path>"); otherwise it is the SHA-256
// of the ATerm with each input derivation replaced by the base16 of its own
// hash modulo (inputs with equal hashes merged). With mask set, output paths
// and the env values named after outputs are printed empty, which gives the
// hash that input-addressed output paths are made from.
func HashModulo(dir storepath.Dir, d *Derivation, mask bool, lookup HashLookup) (nixhash.Hash, error) {
	if err := d.Validate(dir); err != nil {
		return nixhash.Hash{}, err
	}
	kind, _, _ := d.Kind(dir)
	switch kind {
	case FixedOutput:
		o := d.Outputs[0]
		return nixhash.Sum(nixhash.SHA256, []byte("fixed:out:"+o.HashAlgo+":"+o.Hash+":"+o.Path)), nil
	case InputAddressed, Deferred: // deferred outputs are hashed like masked input-addressed ones
	default:
		return nixhash.Hash{}, fmt.Errorf("hash modulo of a %s derivation is not supported", kind)
	}
	byHash := map[string][]string{}
	for _, in := range d.InputDrvs {
		p, _ := dir.Parse(in.Path) // Validate parsed it
		h, err := lookup(p)
		if err != nil {
			return nixhash.Hash{}, fmt.Errorf("hash modulo of input %s: %w", in.Path, err)
		}
		if h.Algo != nixhash.SHA256 || len(h.Digest) != 32 {
			return nixhash.Hash{}, fmt.Errorf("hash modulo of input %s is not a sha256 hash", in.Path)
		}
		byHash[h.Base16()] = append(byHash[h.Base16()], in.Outputs...)
	}
	inputs := make([]InputDrv, 0, len(byHash))
	for k, outs := range byHash {
		slices.Sort(outs)
		inputs = append(inputs, InputDrv{Path: k, Outputs: slices.Compact(outs)})
	}
	slices.SortFunc(inputs, func(a, b InputDrv) int { return strings.Compare(a.Path, b.Path) })
	if inputs == nil {
		inputs = []InputDrv{}
	}
	var b bytes.Buffer
	d.writeATerm(&b, inputs, mask)
	return nixhash.Sum(nixhash.SHA256, b.Bytes()), nil
}

// OutputPaths computes the store path of every output of d, a derivation
// named name (its .drv name without ".drv"): input-addressed outputs from the
// masked hash modulo, a fixed output from its content hash with no references.
func OutputPaths(dir storepath.Dir, name string, d *Derivation, lookup HashLookup) (map[string]storepath.Path, error) {
	if err := d.Validate(dir); err != nil {
		return nil, err
	}
	kind, infos, _ := d.Kind(dir)
	paths := make(map[string]storepath.Path, len(infos))
	switch kind {
	case FixedOutput:
		p, err := dir.MakeFixedOutput(name, infos[0].Method, infos[0].Hash, nil, false)
		if err != nil {
			return nil, err
		}
		paths["out"] = p
	case InputAddressed:
		h, err := HashModulo(dir, d, true, lookup)
		if err != nil {
			return nil, err
		}
		for _, o := range infos {
			if paths[o.Name], err = dir.MakeOutput(o.Name, h, name); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("output paths of a %s derivation are only known after it is built", kind)
	}
	return paths, nil
}

// Check verifies that every declared output path of d, and the env value
// named after each output, equals the path computed for it, as Nix does when
// a .drv is registered. A .drv that fails claims outputs it does not own.
func Check(dir storepath.Dir, name string, d *Derivation, lookup HashLookup) error {
	paths, err := OutputPaths(dir, name, d, lookup)
	if err != nil {
		return err
	}
	for _, o := range d.Outputs {
		want := dir.String(paths[o.Name])
		if o.Path != want {
			return fmt.Errorf("derivation %q has incorrect output %q: it declares %s, the computed path is %s", name, o.Name, o.Path, want)
		}
		if v, ok := d.Getenv(o.Name); !ok || v != want {
			return fmt.Errorf("derivation %q has incorrect environment variable %q: it is %q, it should be %q", name, o.Name, v, want)
		}
	}
	return nil
}

// Path computes the store path of the .drv file holding d, a derivation named
// name: a text path over its ATerm with its input derivations and sources as
// references.
func Path(dir storepath.Dir, name string, d *Derivation) (storepath.Path, error) {
	if err := d.Validate(dir); err != nil {
		return storepath.Path{}, err
	}
	text, err := d.ATerm()
	if err != nil {
		return storepath.Path{}, err
	}
	refs, _ := d.References(dir)
	return dir.MakeText(name+".drv", nixhash.Sum(nixhash.SHA256, text), refs)
}
