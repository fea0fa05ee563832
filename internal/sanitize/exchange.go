// The exchange's own fields: every string an exchange carries besides its
// HTTP message goes through the value detectors, and the records of what
// was redacted are the sanitizer's own.

package sanitize

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// metadata scans the fields a client sets around the HTTP message: names
// of hosts, services and processes, ids, and the command line.
func (sc *scan) metadata(ex *reprisev1.Exchange) {
	ex.Id = sc.id("id", ex.Id)
	ex.ConnectionId = sc.id("connection_id", ex.ConnectionId)
	ex.Service = sc.text("service", ex.Service)
	for _, e := range []struct {
		loc string
		ep  *reprisev1.Endpoint
	}{{"local.ip", ex.Local}, {"remote.ip", ex.Remote}} {
		if e.ep != nil {
			e.ep.Ip = sc.text(e.loc, e.ep.Ip)
		}
	}
	if c := ex.Capture; c != nil {
		c.AgentId = sc.id("capture.agent_id", c.AgentId)
		c.Hostname = sc.text("capture.hostname", c.Hostname)
	}
	if req := ex.Request; req != nil {
		req.Method = sc.text("request.method", req.Method)
		req.Host = sc.text("request.host", req.Host)
		req.Proto = sc.text("request.proto", req.Proto)
	}
	if resp := ex.Response; resp != nil {
		resp.Proto = sc.text("response.proto", resp.Proto)
	}
	if p := ex.Process; p != nil {
		p.Exe = sc.commandLine("process.exe", p.Exe)
		for _, f := range []*string{&p.Comm, &p.ContainerId, &p.PodName, &p.PodNamespace, &p.PodUid, &p.ContainerName} {
			*f = sc.text("process", *f)
		}
		sc.labels(p)
	}
}

// text runs the value detectors on a field no key names: a name or an id.
func (sc *scan) text(loc, v string) string {
	if len(sc.claims) > 0 {
		sc.confirm(where{base: loc}, v, kindText)
	}
	if len(v) < sc.s.detectMinLen || isMarker(v) {
		return v
	}
	return sc.detect(where{base: loc}, v, kindText)
}

// id scans an identifier. One that held a secret becomes a keyed hash of
// it, so ids stay distinct and equal ids stay equal.
func (sc *scan) id(loc, v string) string {
	if repl := sc.text(loc, v); repl != v {
		m := hmac.New(sha256.New, sc.s.idKey)
		m.Write([]byte(v))
		return "redacted-" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))[:22]
	}
	return v
}

// labels decides each label's value by its name, as a field, and scans
// the names; a name that held a secret is replaced.
func (sc *scan) labels(p *reprisev1.Process) {
	for name, v := range p.Labels {
		loc := "process.labels"
		if repl := sc.field(loc+"."+name, name, v, kindText, nil); repl != v {
			p.Labels[name] = repl
		}
		if repl := sc.text(loc, name); repl != name {
			v := p.Labels[name]
			delete(p.Labels, name)
			for p.Labels[repl] != "" {
				repl += "_"
			}
			p.Labels[repl] = v
		}
	}
}

// commandLine scans a command line argument by argument: --name=value,
// name=value and "--name value" are decided as fields named name (so
// --password=… goes by the key rules), a URL as a URL, anything else by
// the value detectors.
func (sc *scan) commandLine(loc, cmd string) string {
	out := rebuild{src: cmd}
	pending := "" // the name of a flag whose value may be the next argument
	for i := 0; i < len(cmd); {
		if cmd[i] == ' ' || cmd[i] == '\t' || cmd[i] == '\n' {
			i++
			continue
		}
		j := i
		for j < len(cmd) && cmd[j] != ' ' && cmd[j] != '\t' && cmd[j] != '\n' {
			j++
		}
		arg, start := cmd[i:j], i
		i = j
		name, key := "", pending
		pending = ""
		if strings.HasPrefix(arg, "-") {
			flag := strings.TrimLeft(arg, "-")
			n, v, ok := strings.Cut(flag, "=")
			if !ok {
				pending = flag
				continue
			}
			name, key, arg, start = n, n, v, start+len(arg)-len(v)
		} else if n, v, ok := strings.Cut(arg, "="); ok && n != "" && !strings.ContainsAny(n, "/:") {
			name, key, arg, start = n, n, v, start+len(n)+1
		}
		var repl string
		if strings.Contains(arg, "://") {
			repl = sc.url(loc+".url", arg)
		} else {
			l := loc
			if name != "" {
				l = loc + "." + name
			}
			repl = sc.field(l, key, arg, kindText, nil)
		}
		if repl != arg {
			out.replace(start, start+len(arg), repl)
		}
	}
	return out.String()
}

// claim is a Redaction the client sent, kept only where this pass finds
// its marker (see confirm).
type claim struct {
	loc, rule, action string
}

// takeClaims keeps the Redactions a client sent for confirm; none of their
// text reaches the store unless confirmed.
func (sc *scan) takeClaims(rs []*reprisev1.Redaction) {
	for _, r := range rs {
		if r != nil {
			sc.claims = append(sc.claims, claim{r.Location, r.Rule, r.Action})
		}
	}
}

// confirm keeps the claims at or under the location of v whose action left
// its marker in v (an earlier pass, in the agent, redacted there): with
// this pass's location, the action the marker shows, and the claimed rule
// only if this sanitizer knows it.
func (sc *scan) confirm(at where, v string, k kind) {
	// How many claims at loc each action's markers in v can confirm.
	budget := map[string]int{ActionRedact: strings.Count(v, Redacted) + shortFills(v), ActionMask: strings.Count(v, "****"),
		ActionTokenize: strings.Count(v, "tok_")}
	if k == kindNumber {
		// A number carries no marker: its location must be claimed exactly.
		budget = map[string]int{ActionRedact: 1, ActionMask: 1, ActionTokenize: 1}
	}
	if budget[ActionRedact]+budget[ActionMask]+budget[ActionTokenize] == 0 {
		return
	}
	loc := sc.locString(at)
	for i, c := range sc.claims {
		under := k != kindNumber && strings.HasPrefix(c.loc, loc) && len(c.loc) > len(loc) && strings.ContainsRune(".[", rune(c.loc[len(loc)]))
		if c.loc == "" || c.loc != loc && !under || budget[c.action] == 0 {
			continue
		}
		// A claim under loc (a key=value of text) may share its marker with
		// one at loc; each claim at loc needs a marker of its own.
		if !under {
			budget[c.action]--
		}
		sc.keepClaim(i, c.loc) // under loc, so as specific as claimed
	}
}

// shortFills counts the runs of '*' that do not follow [REDACTED]: what
// fill writes over a find shorter than the marker.
func shortFills(v string) int {
	n := 0
	for i := 0; i < len(v); i++ {
		if v[i] == '*' && (i == 0 || v[i-1] != '*' && v[i-1] != ']') {
			n++
		}
	}
	return n
}

// confirmRemoved keeps the claims that loc was removed whole (a body, the
// exchange) when it is indeed empty.
func (sc *scan) confirmRemoved(loc, action string) {
	for i, c := range sc.claims {
		if c.loc == loc && c.action == action {
			sc.keepClaim(i, loc)
		}
	}
}

func (sc *scan) keepClaim(i int, loc string) {
	c := sc.claims[i]
	rule := c.rule
	if _, known := sc.s.counts[rule]; !known {
		rule = "upstream"
	}
	sc.confirmed = append(sc.confirmed, &reprisev1.Redaction{Location: sc.scrub(loc), Rule: rule, Action: c.action})
	sc.claims[i].loc = ""
}
