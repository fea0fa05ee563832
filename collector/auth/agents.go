package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Agents are the agents a collector accepts on IngestService. An agent
// proves who it is with its own bearer token, or with a client certificate
// (mutual TLS) whose common name or a DNS name is its id. The file keeps
// only SHA-256 digests of the tokens, so it is not itself a credential.
type Agents struct {
	byID map[string]agentEntry
}

type agentEntry struct {
	tokenSHA256 []byte // nil: the agent authenticates by certificate only
}

// agentsFile is the YAML layout of an agents file:
//
//	agents:
//	  - id: node-a
//	    token_sha256: 9f86d081884c7d65...   # sha256sum of the agent's token
//	  - id: node-b                           # mTLS only: its certificate names node-b
type agentsFile struct {
	Agents []struct {
		ID          string `yaml:"id"`
		TokenSHA256 string `yaml:"token_sha256"`
	} `yaml:"agents"`
}

// LoadAgents reads an agents file.
func LoadAgents(path string) (*Agents, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseAgents(b)
}

// ParseAgents parses the YAML of an agents file; unknown fields, duplicate
// ids and malformed digests are errors, so a typo cannot open the door.
func ParseAgents(b []byte) (*Agents, error) {
	var f agentsFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("agents file: %w", err)
	}
	if len(f.Agents) == 0 {
		return nil, fmt.Errorf("agents file: no agents listed")
	}
	a := &Agents{byID: make(map[string]agentEntry, len(f.Agents))}
	digests := map[string]string{}
	for i, e := range f.Agents {
		if e.ID == "" {
			return nil, fmt.Errorf("agents file: agents[%d].id must not be empty", i)
		}
		if _, dup := a.byID[e.ID]; dup {
			return nil, fmt.Errorf("agents file: agents[%d]: agent %q listed twice", i, e.ID)
		}
		var entry agentEntry
		if e.TokenSHA256 != "" {
			d, err := hex.DecodeString(strings.TrimSpace(e.TokenSHA256))
			if err != nil || len(d) != sha256.Size {
				return nil, fmt.Errorf("agents file: agents[%d].token_sha256 must be 64 hex digits (sha256sum of the token)", i)
			}
			if other, dup := digests[string(d)]; dup {
				return nil, fmt.Errorf("agents file: agents[%d]: agent %q has the same token as %q", i, e.ID, other)
			}
			digests[string(d)] = e.ID
			entry.tokenSHA256 = d
		}
		a.byID[e.ID] = entry
	}
	return a, nil
}

// identify returns the id of the agent making the call. A token must be one
// of the listed agents'; a verified client certificate must name a listed
// agent; when both are present they must name the same one.
func (a *Agents) identify(ctx context.Context) (string, error) {
	tok, err := bearerToken(ctx)
	if err != nil {
		return "", err
	}
	byToken := ""
	if tok != "" {
		byToken = a.byToken(tok)
	}
	if tok != "" && byToken == "" {
		return "", status.Error(codes.Unauthenticated, "unknown agent token: this collector's agents file lists no agent with it")
	}
	names := certNames(ctx)
	byCert := ""
	for _, n := range names {
		if _, ok := a.byID[n]; ok {
			byCert = n
			break
		}
	}
	switch {
	case byToken != "" && len(names) > 0 && byCert != byToken:
		return "", status.Errorf(codes.PermissionDenied, "the token is agent %q's but the client certificate names %s", byToken, strings.Join(names, ", "))
	case byToken != "":
		return byToken, nil
	case byCert != "":
		return byCert, nil
	case len(names) > 0:
		return "", status.Errorf(codes.PermissionDenied, "unknown agent: the client certificate names %s, none of them in this collector's agents file", strings.Join(names, ", "))
	default:
		return "", status.Error(codes.Unauthenticated, "IngestService needs an agent token or an agent's client certificate")
	}
}

func (a *Agents) byToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	found := ""
	// Every entry is compared, in constant time, so timing does not tell
	// how close a guess came or where it matched.
	for id, e := range a.byID {
		if e.tokenSHA256 != nil && subtle.ConstantTimeCompare(sum[:], e.tokenSHA256) == 1 {
			found = id
		}
	}
	return found
}

// certNames returns the common name and DNS names of the call's verified
// client certificate; none without mutual TLS.
func certNames(ctx context.Context) []string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	leaf := info.State.VerifiedChains[0][0]
	var names []string
	if leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	return append(names, leaf.DNSNames...)
}
