package conformance

// MQTT 5.0 cases.

func v5Cases() []testCase {
	return nil
}
