// Package pki is fedprop's small certificate authority: it creates a CA, issues each party
// (client, coordinator, owner, approver, admin) an ECDSA P-256 certificate that carries its role
// and name, builds the mutual TLS 1.3 configurations both ends of a connection use, and reads
// the deny list that revokes certificates without a restart.
//
// A certificate says who its holder is in three places that must agree: the Subject
// CommonName is the name, the Subject OrganizationalUnit is the role, and a URI subject
// alternative name fedprop://ROLE/NAME carries both. Coordinator certificates also carry the
// DNS names and IP addresses clients dial.
package pki

import (
	"errors"
	"fmt"
	"strings"
)

// Role is what a certificate's holder may do.
type Role string

// The roles of issue 7: a client trains and submits as itself, the coordinator serves, an owner
// pulls models, an approver releases them, an admin runs the coordinator.
const (
	RoleClient      Role = "client"
	RoleCoordinator Role = "coordinator"
	RoleOwner       Role = "owner"
	RoleApprover    Role = "approver"
	RoleAdmin       Role = "admin"
)

// Roles lists every role, in the order the CLI documents them.
func Roles() []Role {
	return []Role{RoleClient, RoleCoordinator, RoleOwner, RoleApprover, RoleAdmin}
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("%w: role %q is not one of %s", ErrInvalid, s, roleList())
}

func roleList() string {
	names := make([]string, 0, len(Roles()))
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}

// Identity is who a verified certificate speaks for.
type Identity struct {
	// Name is the holder's name: a client's id, a coordinator's host name, an operator's login.
	Name string
	// Role is what the holder may do.
	Role Role
	// Serial is the certificate's serial number in lower-case hexadecimal, as deny lists name it.
	Serial string
}

// String is "role/name", as logs show an identity.
func (id Identity) String() string { return string(id.Role) + "/" + id.Name }

// MaxNameLen bounds a party's name, which is also a client id on the wire.
const MaxNameLen = 128

// ValidName checks a party name: 1 to MaxNameLen characters from A-Z, a-z, 0-9, '.', '_' and
// '-', starting with a letter or digit. Names become file names, URI paths and client ids, so
// nothing else is allowed.
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: name is empty", ErrInvalid)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: name is %d bytes, at most %d", ErrInvalid, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("%w: name %q must start with a letter or digit", ErrInvalid, name)
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%w: name %q has character %q at byte %d (allowed: letters, digits, '.', '_', '-')", ErrInvalid, name, c, i)
		}
	}
	return nil
}

// Sentinel errors of the package. Check them with errors.Is.
var (
	// ErrInvalid: a name, role, request or file content that cannot be used.
	ErrInvalid = errors.New("invalid")
	// ErrExists: a file the CA would write is already there; nothing was overwritten.
	ErrExists = errors.New("already exists")
	// ErrNoIdentity: a certificate does not carry a consistent fedprop role and name.
	ErrNoIdentity = errors.New("certificate carries no fedprop identity")
	// ErrRevoked: the certificate is on the deny list.
	ErrRevoked = errors.New("certificate revoked")
)
