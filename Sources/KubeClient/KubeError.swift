/// A failed API call: the HTTP code and, when the server sent one, the reason from its
/// `Status` body (`NotFound`, `AlreadyExists`, `Conflict`, `Gone`, `Forbidden`, ...).
/// Messages come from the API server and name objects, never their contents.
public struct KubeError: Error, Sendable, Hashable, CustomStringConvertible {
  public var code: Int
  public var reason: String
  public var message: String

  public init(code: Int, reason: String, message: String) {
    self.code = code
    self.reason = reason
    self.message = message
  }

  init(code: Int, status: KubeStatus?) {
    self.code = status?.code ?? code
    self.reason = status?.reason ?? KubeError.defaultReason(code)
    self.message = status?.message ?? "HTTP \(code)"
  }

  public var isNotFound: Bool { code == 404 }
  public var isConflict: Bool { code == 409 && reason != "AlreadyExists" }
  public var isAlreadyExists: Bool { code == 409 && reason == "AlreadyExists" }
  /// 410: the resourceVersion asked for has been compacted away; list again.
  public var isGone: Bool { code == 410 }
  /// Worth trying again later: throttling, timeouts, server errors.
  public var isRetryable: Bool { code == 429 || code >= 500 || code == 0 }

  public var description: String { "\(reason) (\(code)): \(message)" }

  static func defaultReason(_ code: Int) -> String {
    switch code {
    case 400: return "BadRequest"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "NotFound"
    case 409: return "Conflict"
    case 410: return "Gone"
    case 422: return "Invalid"
    case 429: return "TooManyRequests"
    case 500: return "InternalError"
    case 503: return "ServiceUnavailable"
    case 504: return "Timeout"
    default: return "Unknown"
    }
  }
}

/// Configuration that cannot be used, with a sentence naming the field or file.
public struct KubeConfigError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}
