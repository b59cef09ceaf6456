/// Client-side rate limit (`--kube-api-qps`, `--kube-api-burst`): a token bucket.
/// Pure arithmetic on times the caller passes in, so tests drive it with a manual clock.
public struct TokenBucket: Sendable {
  public let ratePerSecond: Double
  public let burst: Int
  fileprivate var tokens: Double
  private var last: Duration

  public init(ratePerSecond: Double, burst: Int, now: Duration) {
    precondition(ratePerSecond > 0 && burst >= 1)
    self.ratePerSecond = ratePerSecond
    self.burst = burst
    self.tokens = Double(burst)
    self.last = now
  }

  /// Takes one token; returns how long the caller must wait before it may go
  /// (zero when a token was there). Waiters queue: each reserves the next token.
  public mutating func reserve(now: Duration) -> Duration {
    if now > last {
      tokens = min(Double(burst), tokens + (now - last).seconds * ratePerSecond)
      last = now
    }
    tokens -= 1
    if tokens >= 0 { return .zero }
    return .nanoseconds(Int64((-tokens / ratePerSecond * 1e9).rounded(.up)))
  }
}

extension TokenBucket {
  /// Gives back a token taken by `reserve` when the caller decided not to wait.
  public mutating func refund() { tokens = min(Double(burst), tokens + 1) }

  /// Takes one token only if at least `floor` tokens stay in the bucket afterwards
  /// (0: any token will do). Answers zero when it took one, else how long until one
  /// may be taken this way, if nobody else takes tokens meanwhile. Never goes into debt.
  public mutating func take(keeping floor: Double, now: Duration) -> Duration {
    if now > last {
      tokens = min(Double(burst), tokens + (now - last).seconds * ratePerSecond)
      last = now
    }
    if tokens - 1 >= floor {
      tokens -= 1
      return .zero
    }
    let missing = floor + 1 - tokens
    return .nanoseconds(max(1, Int64((missing / ratePerSecond * 1e9).rounded(.up))))
  }

  /// Tokens in the bucket at `now` (tests, metrics).
  public mutating func available(now: Duration) -> Double {
    if now > last {
      tokens = min(Double(burst), tokens + (now - last).seconds * ratePerSecond)
      last = now
    }
    return tokens
  }
}

extension Duration {
  var seconds: Double {
    let (s, atto) = components
    return Double(s) + Double(atto) / 1e18
  }
}
