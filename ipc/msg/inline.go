//lint:file-ignore U1000 every _msgpack field carries msgpack's as_array option and is read by reflection

package msg

import "fmt"

// KindBuildDerivation is BuildDerivation (worker op 36): a derivation handed
// over inline, as remote builders receive it. Frontend channel; answered
// like Build: BuildEvent messages, then BuildResults with one result, or
// Error.
const KindBuildDerivation Kind = 0x0268

// BuildDerivation asks the monitor to build Drv (a BasicDerivation: no
// input derivations; its input sources must be valid) as DrvPath says the
// client calls it. The frontend decoded it from the wire; the monitor
// trusts none of it: it validates the derivation itself, and policy decides
// (an untrusted user may only build fixed-output ones, whose paths the
// monitor computes from their hashes).
type BuildDerivation struct {
	_msgpack struct{} `msgpack:",as_array"`
	DrvPath  StorePath
	Drv      Drv
	Mode     uint64
}

func (BuildDerivation) Kind() Kind { return KindBuildDerivation }
func (m BuildDerivation) Validate() error {
	if m.Mode > BuildModeCheck {
		return fmt.Errorf("mode %d out of range", m.Mode)
	}
	if len(m.Drv.InputDrvs) != 0 || m.Drv.More {
		return fmt.Errorf("a BasicDerivation has no input derivations and fits one message")
	}
	return firstErr(field("DrvPath", m.DrvPath.Validate()), field("Drv", m.Drv.Validate()))
}

var inlineTable = []Spec{
	row[BuildDerivation](0),
}
