package frontend

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"privnix/frontend/wire"
)

// buildFailure is how BuildPaths (9) fails, as nix-daemon 2.8's buildPaths:
// one failed target with an error: that error; more (or one stopped without
// an error): every error is logged (the second and later first, then the
// first), then "build of '<p>', ... failed" names the failed targets, sorted
// by base name. nil if every target succeeded.
func buildFailure(log *Logger, results []wire.KeyedBuildResult) error {
	var failed, errs []string
	for _, r := range results {
		if r.Succeeded() {
			continue
		}
		if !slices.Contains(failed, r.Path.Path) {
			failed = append(failed, r.Path.Path)
		}
		if r.ErrorMsg != "" {
			errs = append(errs, r.ErrorMsg)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	if len(failed) == 1 && len(errs) == 1 {
		return &Error{Msg: errs[0], Status: 1}
	}
	if len(errs) > 0 {
		for _, e := range append(errs[1:], errs[0]) {
			log.Log(wire.LvlError, "\x1b[31;1merror:\x1b[0m "+strings.ReplaceAll(e, "\n", "\n       "))
		}
	}
	slices.SortFunc(failed, func(a, b string) int { return strings.Compare(path.Base(a), path.Base(b)) })
	quoted := make([]string, len(failed))
	for i, p := range failed {
		quoted[i] = "'" + p + "'"
	}
	return &Error{Msg: fmt.Sprintf("build of \x1b[35;1m%s\x1b[0m failed", strings.Join(quoted, ", ")), Status: 1}
}
