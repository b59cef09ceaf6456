import Testing
import YAML

@Suite struct YAMLTests {
  @Test func documentsMappingsSequencesAndBlockScalars() throws {
    let docs = try YAMLDocuments.parseAll(
      """
      a: 1
      list: [x, "y"]
      block: |
        line one
        line two
      ---
      - k: v
      """)
    #expect(docs.count == 2)
    #expect(docs[0]["a"]?.string == "1")
    #expect(docs[0]["list"]?.sequence?.compactMap(\.string) == ["x", "y"])
    #expect(docs[0]["block"]?.string == "line one\nline two\n")
    #expect(docs[1].sequence?.first?["k"]?.string == "v")
  }

  @Test func jsonIsYAML() throws {
    let doc = try #require(try YAMLDocuments.parseAll(#"{"kind": "Config", "users": [{"name": "u", "token": "t"}]}"#).first)
    #expect(doc["kind"]?.string == "Config")
    #expect(doc["users"]?.sequence?.first?["token"]?.string == "t")
  }

  @Test func nullsAreOnlyPlainNulls() throws {
    let doc = try #require(try YAMLDocuments.parseAll("a:\nb: ~\nc: null\nd: 'null'\ne: \"\"\n").first)
    #expect(doc["a"]?.isNull == true)
    #expect(doc["b"]?.isNull == true)
    #expect(doc["c"]?.isNull == true)
    #expect(doc["d"]?.isNull == false)
    #expect(doc["e"]?.isNull == false)
  }

  @Test func anchorsAndAliasesAreCopied() throws {
    let doc = try #require(try YAMLDocuments.parseAll("base: &b {x: 1}\nother: *b\n").first)
    #expect(doc["other"] == doc["base"])
    #expect(doc["other"]?["x"]?.string == "1")
  }

  @Test func aliasExpansionIsBounded() {
    // Each level doubles the previous one: 2^20 leaves if expanded.
    var text = "l0: &l0 [x, x]\n"
    for i in 1...20 { text += "l\(i): &l\(i) [*l\(i - 1), *l\(i - 1)]\n" }
    #expect(throws: YAMLError.self) { try YAMLDocuments.parseAll(text) }
  }

  @Test func syntaxErrorsHavePositionButNoText() throws {
    let secret = "s3cr3t-value"
    let error = try #require(throws: YAMLError.self) {
      try YAMLDocuments.parseAll("spec:\n  parameters:\n    token: \(secret): oops\n")
    }
    #expect(error.line == 3)
    #expect(!error.description.contains(secret), "\(error)")
  }

  @Test func laterDocumentErrorsComeAfterEarlierDocuments() throws {
    let documents = YAMLDocuments("a: 1\n---\nb: [unclosed\n")
    #expect(try documents.next()?["a"]?.string == "1")
    #expect(throws: YAMLError.self) { try documents.next() }
    #expect(try documents.next() == nil)
  }

  @Test func emptyStreamHasNoDocuments() throws {
    #expect(try YAMLDocuments.parseAll("").isEmpty)
    #expect(try YAMLDocuments.parseAll("# only a comment\n").isEmpty)
  }
}
