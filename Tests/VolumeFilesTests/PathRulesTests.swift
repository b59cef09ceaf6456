import Testing
import VolumeFiles

/// One rule for the driver (paths a provider returns) and the reference provider (names
/// and paths in its `objects` parameter): these cases are both sides' former tests.
@Suite struct PathRulesTests {
  static let longElement = String(repeating: "x", count: 255)
  // 15 × 255 + 254 + 1 bytes of names and 16 slashes: exactly 4096.
  static let longestPath = (Array(repeating: longElement, count: 15) + [String(repeating: "x", count: 254), "y"])
    .joined(separator: "/")

  @Test(arguments: [
    "a", "password", "a.txt", ".hidden", "db/password", "a/b/c/d", "a/.b", "a/b..", "x..", "a.b/c.d",
    "with space", "ünïcödé/名前", "certs/tls.crt", "db-password", longElement, "dir/" + longElement, longestPath,
  ])
  func acceptsCleanRelativePaths(_ path: String) throws {
    #expect(Self.longestPath.utf8.count == 4096)
    try PathRules.validate(path)
    #expect(PathRules.isValid(path))
  }

  @Test(arguments: [
    ("", "is empty"),
    ("/etc/passwd", "is absolute"),
    ("/", "is absolute"),
    ("a/", "ends with \"/\""),
    ("a//b", "contains \"//\""),
    (".", "contains a \".\" element"),
    ("./a", "contains a \".\" element"),
    ("a/./b", "contains a \".\" element"),
    ("a/.", "contains a \".\" element"),
    ("..", "contains a \"..\" element"),
    ("../x", "contains a \"..\" element"),
    ("a/../b", "contains a \"..\" element"),
    ("a/..", "contains a \"..\" element"),
    ("../etc/passwd", "contains a \"..\" element"),
    ("..data", "reserved for the writer"),
    ("..data_tmp", "reserved for the writer"),
    ("..2024_01_01", "reserved for the writer"),
    ("..foo/bar", "reserved for the writer"),
    ("...", "reserved for the writer"),
    // Deeper elements too (the reference provider's rule, now the only one).
    ("a/..b", "reserved for the writer"),
    ("a/..data", "reserved for the writer"),
    ("a/b/...", "reserved for the writer"),
    ("a\u{0}b", "contains a NUL byte"),
    (longElement + "x", "element longer than 255 bytes"),
    ("a/" + longElement + "x", "element longer than 255 bytes"),
    (longestPath + "z", "longer than 4096 bytes"),
  ])
  func rejectsWithReason(_ path: String, _ reason: String) throws {
    let error = try #require(throws: VolumeFileError.self) { try PathRules.validate(path) }
    guard case .invalidPath(let reported, let why) = error.kind else {
      Issue.record("expected .invalidPath, got \(error.kind)")
      return
    }
    #expect(reported == path)
    #expect(why.contains(reason), "reason was: \(why)")
    #expect(error.description.contains(reason))
    #expect(!PathRules.isValid(path))
  }

  @Test func descriptionQuotesAndEscapesThePath() throws {
    let error = try #require(throws: VolumeFileError.self) { try PathRules.validate("a\nb/../c") }
    #expect(error.description.contains(#""a\nb/../c""#), "\(error.description)")
  }
}
