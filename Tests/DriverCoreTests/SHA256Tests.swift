import CLinux
import COpenSSL
import Testing

/// The C shim's SHA-256 (state record names): the standard's test vectors, and OpenSSL's
/// answer for every length around the padding's block boundaries.
struct SHA256Tests {
  static func hex(_ bytes: [UInt8]) -> String {
    bytes.map { byte in
      let s = String(byte, radix: 16)
      return byte < 16 ? "0" + s : s
    }.joined()
  }

  static func ours(_ input: [UInt8]) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    input.withUnsafeBytes { clinux_sha256($0.baseAddress, $0.count, &digest) }
    return digest
  }

  static func openSSL(_ input: [UInt8]) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    _ = input.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &digest, &length, EVP_sha256(), nil) }
    return digest
  }

  @Test(arguments: [
    ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
  ])
  func standardVectors(input: String, expected: String) {
    #expect(Self.hex(Self.ours(Array(input.utf8))) == expected)
  }

  @Test func aMillionAs() {
    let input = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
    #expect(Self.hex(Self.ours(input)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }

  @Test func everyLengthUpTo300MatchesOpenSSL() {
    var generator = SystemRandomNumberGenerator()
    for length in 0...300 {
      let input = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
      #expect(Self.ours(input) == Self.openSSL(input), "length \(length)")
    }
  }
}
