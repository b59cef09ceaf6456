extension Duration {
  /// Whole milliseconds, rounded up so a timer never fires early; negative is 0.
  /// libuv timers count in milliseconds.
  public var timerMilliseconds: UInt64 {
    let (seconds, attoseconds) = components
    guard seconds >= 0, attoseconds >= 0 || seconds > 0 else { return 0 }
    let attoPerMs: Int64 = 1_000_000_000_000_000
    let whole = UInt64(seconds) * 1000 + UInt64(max(0, attoseconds) / attoPerMs)
    return attoseconds % attoPerMs > 0 ? whole + 1 : whole
  }
}
