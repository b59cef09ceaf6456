// SecretProviderClass files as standalone mode reads them (--spc-dir): YAML (or JSON),
// one or more documents, possibly other kinds. Decoding throws or returns outcomes; a class
// that decodes has a name and a valid provider name, and a parse error never quotes the file.
@testable import DriverCore
import YAML

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  let text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
  let outcomes: [SPCDecoding.Outcome]
  do {
    outcomes = try SPCDecoding.decodeAll(text, defaultNamespace: "fuzz")
  } catch {
    _ = "\(error)"
    return 0
  }
  for outcome in outcomes {
    switch outcome {
    case .spc(let spc):
      guard !spc.name.isEmpty, !spc.namespace.isEmpty, !spc.provider.isEmpty,
        SecretProviderClass.isValidProviderName(spc.provider)
      else { fatalError("accepted a class with an empty name or namespace or a bad provider: \(spc.provider.debugDescription)") }
    case .invalid(let name, _, let reason):
      guard !name.isEmpty, !reason.isEmpty else { fatalError("an invalid class without a name or reason") }
    case .otherKind:
      break
    }
  }
  return 0
}
