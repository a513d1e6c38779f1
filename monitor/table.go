package monitor

import (
	"fmt"
	"os"

	"privnix/ipc/msg"
)

// This table is everything a child may ask of the monitor. Read it first.
//
// Each row names the request kind, the role allowed to send it, flags, and the
// handler. A kind missing from the table, or sent by another role, is a
// protocol violation: the sender is killed and the monitor goes on. Identity
// never comes from a message: handlers read s.peer and s.trusted, which the
// monitor recorded at accept time. Every handler runs: decode and Validate
// (done by ipc) → permission (the flags, then policy) → compute → storefs →
// database → answer.
var table = map[msg.Kind]route{
	//                         from           flags     handler
	msg.KindIsValidPath:     {roleFrontend, flagRO, handleIsValidPath},
	msg.KindQueryPathInfo:   {roleFrontend, flagRO, handleQueryPathInfo},
	msg.KindQueryPaths:      {roleFrontend, flagRO, handleQueryPaths},
	msg.KindQueryPathInfos:  {roleFrontend, flagRO, handleQueryPathInfos},
	msg.KindOpenGeneration:  {roleFrontend, flagRO, handleOpenGeneration},
	msg.KindQueryReferrers:  {roleFrontend, flagRO, handleQueryReferrers},
	msg.KindAddTempRoot:     {roleFrontend, 0, handleAddTempRoot},
	msg.KindBeginUpload:     {roleFrontend, 0, handleBeginUpload},
	msg.KindFinishUpload:    {roleFrontend, 0, handleFinishUpload},
	msg.KindAddSignatures:   {roleFrontend, 0, handleAddSignatures},
	msg.KindAddIndirectRoot: {roleFrontend, 0, handleAddIndirectRoot},
	msg.KindSyncWithGC:      {roleFrontend, 0, handleSyncWithGC},
	msg.KindSetOptions:      {roleFrontend, 0, handleSetOptions},
	msg.KindCollectGarbage:  {roleFrontend, 0, handleCollectGarbage},
	msg.KindFindRoots:       {roleFrontend, flagRO, handleFindRoots},
	msg.KindVerifyStore:     {roleFrontend, 0, handleVerifyStore},
	msg.KindOptimiseStore:   {roleFrontend, 0, handleOptimiseStore},

	// Derivations and builds (build*.go).
	msg.KindQueryDrvOutputs: {roleFrontend, 0, handleQueryDrvOutputs},
	msg.KindBuild:           {roleFrontend, 0, handleBuild},
	msg.KindBuildDerivation: {roleFrontend, 0, handleBuildDerivation}, // build_inline.go
	msg.KindQueryMissing:    {roleFrontend, flagRO, handleQueryMissing},

	// Substitution (substitute*.go; builds and QueryMissing use it too).
	msg.KindQuerySubstitutable: {roleFrontend, 0, handleQuerySubstitutable},
}

type flags uint8

const (
	flagRO      flags = 1 << iota // reads the database only
	flagTrusted                   // only for trusted users (checked before the handler)
)

// A handler answers one request. It returns an error only for a protocol
// violation; a refusal or a failure is an answer (msg.Error).
type handler func(s *session, req msg.Message, fds []*os.File) (reply, error)

// reply is a handler's answer: usually one message; a long list is several
// (msg.Paths with More). Fds ride on the last message.
type reply struct {
	msgs []msg.Message
	fds  []*os.File
}

func answer(m msg.Message, fds ...*os.File) reply { return reply{msgs: []msg.Message{m}, fds: fds} }

type route struct {
	from   role
	flags  flags
	handle handler
}

func dispatch(s *session, req msg.Message, fds []*os.File) (reply, error) {
	r, ok := table[req.Kind()]
	if !ok || r.from != s.fe.role {
		return reply{}, fmt.Errorf("%v is not a request a %s may send", req.Kind(), s.fe.role)
	}
	if r.flags&flagTrusted != 0 && !s.trusted {
		return answer(refuse("you are not privileged to do this (not in 'trusted-users')")), nil
	}
	return r.handle(s, req, fds)
}

// refuse is a policy refusal: the client sees message as a Nix error.
func refuse(message string) msg.Message {
	return &msg.Error{Class: msg.ClassPolicy, Message: message}
}

// failed is an internal error: logged in full, the client gets a short text.
func (s *session) failed(what string, err error) reply {
	s.log.Error(what, "err", err)
	return answer(&msg.Error{Class: msg.ClassInternal, Message: what + " failed in privnixd; see its log"})
}
