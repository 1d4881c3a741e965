// Package hostuser turns a daemon's user and group, as declared, into
// the credential a process of the host runs with: the process runtime's
// daemons, and the health checks (exec) orch runs on the host for them.
package hostuser

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// Credential looks up user and group by name (or number). It returns nil
// when they are orch's own, and an error when they differ and orch is not
// root.
func Credential(userName, groupName string) (*syscall.Credential, error) {
	if userName == "" && groupName == "" {
		return nil, nil
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	groups := []uint32{}
	if userName != "" {
		u, err := user.Lookup(userName)
		if err != nil {
			if _, nerr := strconv.ParseUint(userName, 10, 32); nerr == nil {
				u, err = user.LookupId(userName)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", userName, err)
		}
		uid = atou32(u.Uid)
		gid = atou32(u.Gid)
		if ids, err := u.GroupIds(); err == nil {
			for _, g := range ids {
				groups = append(groups, atou32(g))
			}
		}
	}
	if groupName != "" {
		g, err := user.LookupGroup(groupName)
		if err != nil {
			if _, nerr := strconv.ParseUint(groupName, 10, 32); nerr == nil {
				g, err = user.LookupGroupId(groupName)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", groupName, err)
		}
		gid = atou32(g.Gid)
	}
	if uid == uint32(os.Geteuid()) && gid == uint32(os.Getegid()) {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		who := "user " + strconv.Quote(userName)
		if userName == "" {
			who = "group " + strconv.Quote(groupName)
		}
		return nil, fmt.Errorf("running as %s needs orch to run as root (orch runs as uid %d)", who, os.Geteuid())
	}
	if len(groups) == 0 {
		groups = []uint32{gid}
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}, nil
}

func atou32(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}
