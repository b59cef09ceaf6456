import CSIMessages
import DriverCore
import Testing

// Made-up values: none of them is a real credential.
private let password = "S3cret-Value-0042"
private let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDpkZWZhdWx0In0.c2lnbmF0dXJlLXBhcnQ"
private let marker = SecretScrubber.marker

private func base64(_ bytes: [UInt8]) -> String {
  let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
  var out = ""
  var i = 0
  while i < bytes.count {
    let chunk = Array(bytes[i..<min(i + 3, bytes.count)])
    let n = chunk.enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << UInt32(16 - 8 * $1.offset) }
    for j in 0..<(chunk.count + 1) { out.append(alphabet[Int((n >> UInt32(18 - 6 * j)) & 63)]) }
    out += String(repeating: "=", count: 3 - chunk.count)
    i += 3
  }
  return out
}

/// True when any run of `length` bytes of `secret` appears in `text`.
private func containsFragment(of secret: String, in text: String, length: Int = 12) -> Bool {
  let s = Array(secret.utf8)
  guard s.count >= length else { return text.contains(secret) }
  return (0...(s.count - length)).contains { text.contains(String(decoding: s[$0..<($0 + length)], as: UTF8.self)) }
}

@Suite struct SecretScrubberTests {
  @Test func exactOccurrencesAreReplaced() {
    let scrubber = SecretScrubber(secrets: [password])
    let out = scrubber.scrub("login failed for password \(password) (tried \(password)twice)")
    #expect(!out.contains(password))
    #expect(out == "login failed for password \(marker) (tried \(marker)twice)")
  }

  @Test func jsonEscapedFormsAreReplaced() {
    let tricky = #"pa"ss\wo<rd>&/x"#
    let scrubber = SecretScrubber(secrets: [tricky])
    let once = #"pa\"ss\\wo\u003crd\u003e\u0026/x"#
    let plain = #"pa\"ss\\wo<rd>&/x"#
    let twice = #"pa\\\"ss\\\\wo<rd>&/x"#
    for form in [tricky, once, plain, twice] {
      let out = scrubber.scrub(#"{"secrets":"{\"password\":\"\#(form)\"}"}"#)
      #expect(out.contains(marker), "form \(form.count) bytes long was not found")
      #expect(!out.contains("wo<rd") && !out.contains(#"wo\u003crd"#))
    }
  }

  /// Repetitive secrets and text share windows: every place one occurs is still found
  /// (the fragment search groups equal windows of the text).
  @Test func repetitiveSecretsAreFoundWhereverTheyRepeat() {
    let secret = String(repeating: "ab", count: 30) + "Z9"
    let text = "before " + secret + " middle " + String(secret.prefix(20)) + " after " + String(repeating: "ab", count: 3000)
    let out = SecretScrubber(secrets: [secret]).scrub(text, limitBytes: 1 << 20)
    #expect(!containsFragment(of: secret, in: out, length: SecretScrubber.fragmentBytes))
    #expect(out.hasPrefix("before "))
    #expect(out.contains(" middle "))
    #expect(out.contains(" after "))
  }

  @Test func overlappingAndNestedSecretsLeaveNoPiece() {
    let a = "abcdefgh1234"
    let b = "1234ijklmnop"
    let inner = "efgh12"
    let scrubber = SecretScrubber(secrets: [a, b, inner])
    #expect(scrubber.scrub("x abcdefgh1234ijklmnop y") == "x \(marker) y")
    #expect(scrubber.scrub("[efgh12]") == "[\(marker)]")
  }

  @Test func shortSecretsFollowTheRule() {
    let scrubber = SecretScrubber(secrets: ["abc", "admin"])
    // Under 4 bytes: never looked for.
    #expect(scrubber.scrub("abc abcd") == "abc abcd")
    // Under 8 bytes: only as a whole word.
    #expect(scrubber.scrub("administrator: user admin denied") == "administrator: user \(marker) denied")
    #expect(scrubber.scrub("\"admin\"") == "\"\(marker)\"")
  }

  @Test func truncatedEchoesAreCaughtByFragments() {
    let scrubber = SecretScrubber(secrets: [token])
    let prefix = String(token.prefix(40))
    let out = scrubber.scrub("bad token \(prefix)... (truncated)")
    #expect(!containsFragment(of: token, in: out, length: 16))
    #expect(out.hasPrefix("bad token \(marker)"))
    #expect(out.hasSuffix("... (truncated)"))
  }

  @Test func encodedFormsAreReplaced() {
    let scrubber = SecretScrubber(secrets: [password])
    let hex = Array(password.utf8).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    #expect(scrubber.scrub("hex \(hex) end") == "hex \(marker) end")
    #expect(scrubber.scrub("b64 \(base64(Array(password.utf8))) end").hasPrefix("b64 \(marker)"))
    // Inside a larger base64 blob, at each of the three alignments.
    for lead in ["", "x", "xy"] {
      let blob = base64(Array((lead + "{\"password\":\"\(password)\"}").utf8))
      let out = scrubber.scrub(blob)
      #expect(out.contains(marker))
      for offset in 0..<3 {
        let core = base64(Array(password.utf8.dropFirst(offset).prefix(12)))
        #expect(!out.contains(core), "base64 of the secret at offset \(offset) survived")
      }
    }
  }

  @Test func controlCharactersBecomeSpacesAndNeverRejoinASecret() {
    let scrubber = SecretScrubber(secrets: [password])
    let out = scrubber.scrub("line1\nline2\r\u{1B}[31mred\u{7F}\u{0}\u{85}\u{202E}evil\u{2028}end\t.")
    #expect(out == "line1 line2  [31mred    evil end .")
    let split = String(password.prefix(8)) + "\u{7}" + String(password.dropFirst(8))
    let kept = scrubber.scrub(split)
    #expect(!kept.contains(password))
    #expect(kept.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F })
  }

  @Test func truncationStopsAtACharacterBoundary() {
    for unit in ["é", "€", "🔑", "a"] {
      let out = SecretScrubber().scrub(String(repeating: unit, count: 1000), limitBytes: 100)
      #expect(out.utf8.count <= 100)
      #expect(out.hasSuffix("…"))
      #expect(out.dropLast().allSatisfy { String($0) == unit })
      #expect(out.utf8.count > 100 - 3 - unit.utf8.count)
    }
    #expect(SecretScrubber().scrub("short", limitBytes: 100) == "short")
  }

  @Test func invalidUTF8IsReplacedNotDropped() {
    let out = SecretScrubber().scrub(bytes: Array("a".utf8) + [0xFF, 0xC3] + Array("b".utf8))
    #expect(out.hasPrefix("a") && out.hasSuffix("b") && out.unicodeScalars.count == 4)
  }

  @Test func hugeTextIsCutBeforeTheSearchWithoutLeavingAPiece() {
    let scrubber = SecretScrubber(secrets: [token])
    let pad = String(repeating: ".", count: SecretScrubber.maxInputBytes - 30)
    let out = scrubber.scrub(pad + token + " tail", limitBytes: 1 << 20)
    #expect(!containsFragment(of: token, in: out, length: 8))
    #expect(out.utf8.count < SecretScrubber.maxInputBytes)
    #expect(out.hasSuffix("\(marker)…"))
  }

  @Test func publishRequestKnowsTokensSecretsAndUnknownContextValues() {
    var request = CSI.NodePublishVolumeRequest()
    request.secrets = ["password": password, "username": "admin"]
    request.volumeContext = [
      "csi.storage.k8s.io/serviceAccount.tokens":
        #"{"vault":{"token":"\#(token)","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#,
      "csi.storage.k8s.io/pod.name": "app-0",
      "csi.storage.k8s.io/pod.namespace": "default",
      "secretProviderClass": "my-spc",
      "customKey": "custom-value-9",
    ]
    let scrubber = SecretScrubber(publishing: request)
    let text = "pod default/app-0 class my-spc: audience vault token \(token) expires 2030-01-01T00:00:00Z, "
      + "password=\(password), user admin, custom custom-value-9"
    let out = scrubber.scrub(text)
    #expect(!out.contains(token) && !containsFragment(of: token, in: out, length: 16))
    #expect(!out.contains(password) && !out.contains("custom-value-9") && !out.contains("user admin"))
    #expect(out.contains("pod default/app-0 class my-spc: audience vault token"))
    #expect(out.contains("expires 2030-01-01T00:00:00Z"))
  }

  @Test func malformedTokensJSONIsSecretAsAWhole() {
    var request = CSI.NodePublishVolumeRequest()
    let broken = #"{"vault":{"token":"\#(token)"#  // cut short: the string never ends
    request.volumeContext = ["csi.storage.k8s.io/serviceAccount.tokens": broken]
    #expect(SecretScrubber(publishing: request).scrub("echo \(broken)") == "echo \(marker)")
  }

  @Test func withoutKnownSecretsCredentialShapesAreRedacted() {
    let out = SecretScrubber.unknownSecrets.scrub("auth with \(token) failed for pod default/app-0 (uid 1234)")
    #expect(!containsFragment(of: token, in: out, length: 16))
    #expect(out.contains("failed for pod default/app-0 (uid 1234)"))
  }
}
