package sanitize

import (
	"testing"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Corpora for the end-to-end test in package sanitize_test, which goes
// through the collector (a package that imports this one).

// CraftedExchange plants a secret in every string field; see craftedExchange.
var CraftedExchange = craftedExchange

// SecretExchanges returns the secret corpus: each exchange with the secrets
// it must not keep.
func SecretExchanges(t testing.TB) ([]*reprisev1.Exchange, [][]string) {
	var exs []*reprisev1.Exchange
	var secrets [][]string
	for _, tc := range secretCorpus(t) {
		exs, secrets = append(exs, tc.ex), append(secrets, tc.secrets)
	}
	return exs, secrets
}

// Compress encodes b with enc (gzip, deflate, raw-deflate, br, zstd).
var Compress = compress

// Secret values of the corpus, for exchanges built outside this package.
var SecCard, SecEmail, SecPassword = secCard, secEmail, secPassword
