package kmip

import "testing"

func TestParseConfig(t *testing.T) {
	t.Parallel()
	good := `{"servers":["kms:5696"],"ca":"ca.pem","cert":"c.pem","key":"k.pem","timeout":"3s"}`
	if c, err := ParseConfig([]byte(good)); err != nil || c.Servers[0] != "kms:5696" {
		t.Fatalf("ParseConfig = %+v, %v", c, err)
	}
	for name, raw := range map[string]string{
		"unknown field": `{"ca":"a","cert":"b","key":"c","sever":["x:1"]}`,
		"no key":        `{"ca":"a","cert":"b"}`,
		"bad timeout":   `{"ca":"a","cert":"b","key":"c","timeout":"forever"}`,
		"two objects":   `{"ca":"a","cert":"b","key":"c"}{}`,
		"not JSON":      `servers = kms:5696`,
	} {
		if _, err := ParseConfig([]byte(raw)); err == nil {
			t.Errorf("%s: ParseConfig succeeded", name)
		}
	}
}
