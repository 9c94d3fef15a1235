namespace LoraRuntime;

/// <summary>
/// An iterative linear-algebra method (the QR iteration of an SVD, a secular equation) reached its iteration limit
/// without converging. Every iteration in the library is bounded; this is what a limit reached looks like, never a
/// hang. The message names the method, the limit and the size.
/// </summary>
public sealed class NoConvergenceException : ArithmeticException
{
    /// <summary>An exception with <paramref name="message"/>.</summary>
    public NoConvergenceException(string message) : base(message) { }

    /// <summary>An exception with no message.</summary>
    public NoConvergenceException() { }

    /// <summary>An exception with <paramref name="message"/> caused by <paramref name="inner"/>.</summary>
    public NoConvergenceException(string message, Exception inner) : base(message, inner) { }
}
