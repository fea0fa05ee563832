package sanitize

import (
	"strings"
	"testing"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// craftedExchange plants a secret in every string field a client sets.
func craftedExchange() (*reprisev1.Exchange, []string) {
	ex := &reprisev1.Exchange{
		Id:           "id-" + secEmail,
		ConnectionId: "conn-" + secAWS,
		Service:      "svc " + secCard,
		Local:        &reprisev1.Endpoint{Ip: secPhone2},
		Process: &reprisev1.Process{
			Exe:    "/usr/bin/app --password=" + "flagpass-1234" + " --token tokval-5678 DB_PASSWORD=envpass-9 postgres://u:urlpass-77@db/x " + secGitHub,
			Comm:   secSSN,
			Labels: map[string]string{"api-key": "labelkey-4321", "owner": secEmail, secIBAN: "x"},
		},
		Capture: &reprisev1.Capture{AgentId: "agent-" + secEntropy, Hostname: "host-" + secEmail},
		Request: &reprisev1.HttpRequest{Method: "GET", Target: "/?" + secEmail + "=1", Host: "h-" + secEmail,
			Headers: hdrs("X-"+secEmail, "v")},
		Response: &reprisev1.HttpResponse{StatusCode: 200, Headers: hdrs("Location", "https://a.example/cb?code=oauthcode-55&state=st-66")},
		Redactions: []*reprisev1.Redaction{
			{Location: "request.headers.Authorization", Rule: "client-rule " + secCard, Action: "redact"},
			{Location: "secret " + secEmail, Rule: secAWS, Action: secSSN},
		},
	}
	return ex, []string{secEmail, secAWS, secCard, secPhone2, "flagpass-1234", "tokval-5678", "envpass-9", "urlpass-77",
		secGitHub, secSSN, "labelkey-4321", secIBAN, secEntropy, "oauthcode-55", "st-66"}
}

// TestExchangeFields: no secret survives in any field of the exchange,
// and the Redactions the client sent are not stored as sent.
func TestExchangeFields(t *testing.T) {
	s := Default()
	ex, secrets := craftedExchange()
	if !s.Sanitize(ex) {
		t.Fatal("dropped")
	}
	assertNoSecrets(t, ex, secrets)
	if !strings.HasPrefix(ex.Id, "redacted-") || !strings.HasPrefix(ex.ConnectionId, "redacted-") {
		t.Errorf("ids %q %q, want keyed hashes", ex.Id, ex.ConnectionId)
	}
	for _, r := range ex.Redactions {
		if r.Rule == "client-rule "+secCard || strings.Contains(r.Location, "secret ") {
			t.Errorf("client's Redaction kept: %v", r)
		}
	}
	if !strings.HasPrefix(ex.Process.Exe, "/usr/bin/app --password=[REDACTED] --token [REDACTED] DB_PASSWORD=[REDACTED] postgres://u:") {
		t.Errorf("exe %q", ex.Process.Exe)
	}
	if ex.Process.Labels["owner"] != Redacted || ex.Process.Labels["api-key"] != Redacted {
		t.Errorf("labels %v", ex.Process.Labels)
	}
	// Same id in, same id out; a clean id is kept.
	again, _ := craftedExchange()
	s.Sanitize(again)
	if again.Id != ex.Id {
		t.Errorf("the same id gave %q and %q", ex.Id, again.Id)
	}
	if clean := (&reprisev1.Exchange{Id: "0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b"}); Default().Sanitize(clean) && clean.Id != "0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b" {
		t.Errorf("clean id changed to %q", clean.Id)
	}
}

// TestClaimsConfirmed: what an agent's pass redacted keeps its record on
// the collector's pass, in the collector's words; a record without a
// marker where it says is dropped.
func TestClaimsConfirmed(t *testing.T) {
	ex := req("/", hdrs("X-Api-Key", "k-123-short", "Content-Type", "application/json"), `{"email":"`+secEmail+`","n":"plain"}`)
	Default().Sanitize(ex)
	first := len(ex.Redactions)
	ex.Redactions = append(ex.Redactions,
		&reprisev1.Redaction{Location: "request.body.n", Rule: "email", Action: "redact"},            // no marker there
		&reprisev1.Redaction{Location: "request.headers.X-Api-Key", Rule: "made-up", Action: "mask"}, // wrong action
	)
	Default().Sanitize(ex)
	if len(ex.Redactions) != first {
		t.Fatalf("second pass kept %v, want the first pass's %d", ex.Redactions, first)
	}
	for _, r := range ex.Redactions {
		if r.Location == "request.body.n" || r.Rule == "made-up" {
			t.Errorf("unconfirmed claim kept: %v", r)
		}
	}
}
