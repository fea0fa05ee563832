package sanitize

import (
	"encoding/base64"
	"strings"
	"testing"
)

// TestEntropyOnText: generated tokens are found wherever they are; URLs,
// paths, file names, identifiers, markup and base64 media are not.
func TestEntropyOnText(t *testing.T) {
	for _, v := range []string{
		secEntropy,
		"sk_live_4eC39HqLyjWDarjtT1zdp7dc",
		"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8a1mT3vB",        // an AWS secret access key's shape
		"session=s%3A9Qm4Zt7Lw2Xk8Rb5Nc1Vh6Jd3Fg0Ps4Ty.x", // a signed session id
		"see https://cdn.example/f.pdf?sig=Hq7Xk2Zp9Lm4Rt6Wv1Yb3Nc8Jd5Fg0Qs2Tu4Vw6Xy8A%3D&se=2026",
		"href=\"/x?token=Zk9Lm3Qx7Vb2Nc8Rt4Wy6Hd1Jg5Ps0Ua\"",
	} {
		if got := entropyFind(nil, v); len(got) == 0 {
			t.Errorf("entropy finds nothing in %q", v)
		}
	}
	png := "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
	for _, v := range []string{
		`<a href="http://www.cl.cam.ac.uk/~mgk25/ucs/examples/UTF-8-test.txt">UTF-8 test</a>`,
		"/usr/share/doc/libGLX-mesa0/examples/glxGears3DemoSample.c",
		"getUserAccountSettingsV2ForAdministrators",
		"/usr/lib/x86_64-linux-gnu/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner",
		`<img src="data:image/png;base64,` + png + `">`,
		png,
		`<div class="Header-module--navContainer--3XsUZ">`,
		"Content-Type: multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
	} {
		if got := entropyFind(nil, v); len(got) != 0 {
			t.Errorf("entropy finds %q in %q", v[got[0][0]:got[0][1]], v)
		}
	}
}

// TestMediaPrefixes: each prefix is the base64 of its format's signature.
func TestMediaPrefixes(t *testing.T) {
	sigs := []string{"\x89PNG\r\n\x1a\n", "\xff\xd8\xff\xe0", "GIF89a", "RIFF\x00\x00", "%PDF-1.7", "wOFF\x00", "wOF2\x00",
		"OggS\x00", "ID3\x04", "PK\x03\x04\x14", "<svg x", "<?xml "}
	for i, sig := range sigs {
		if enc := base64.StdEncoding.EncodeToString([]byte(sig + "padding-bytes")); !strings.HasPrefix(enc, mediaPrefixes[i]) {
			t.Errorf("%q encodes as %s, prefix %s", sig, enc, mediaPrefixes[i])
		}
	}
}

// TestSignedURLInText: the signature of a signed URL in free text (an HTML
// page, a log line) is redacted, by its parameter's name when it is hex.
func TestSignedURLInText(t *testing.T) {
	sig := "4b1c2a9e7f3d5e6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a"
	body := `<a href="https://b.example/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=` + sig + `">get</a>`
	ex := resp(hdrs("Content-Type", "text/html"), []byte(body))
	Default().Sanitize(ex)
	if strings.Contains(string(ex.Response.Body), sig) || !strings.Contains(string(ex.Response.Body), "AWS4-HMAC-SHA256") {
		t.Errorf("stored %s", ex.Response.Body)
	}
}
