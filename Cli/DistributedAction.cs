using LoraRuntime.Distributed;

namespace LoraRuntime.Cli;

/// <summary>
/// Runs a command that takes part in a data-parallel job: joins MPI's world when <c>mpirun</c> launched the process
/// (a single process otherwise, exactly as before), gives the body the world and the rank's terminal, and ends the job
/// as one: a rank that fails prints its error with its rank and host, then aborts every rank with its exit code
/// (MPI_Abort), so no other rank waits forever in a collective; a rank that is killed is reported by <c>mpirun</c>,
/// which then ends the others.
/// </summary>
internal static class DistributedAction
{
    /// <summary>Runs <paramref name="body"/> as <see cref="CliAction.Run"/> does, on every rank of the job.</summary>
    public static int Run(Terminal terminal, Func<Communicator, Terminal, int> body)
    {
        Communicator world;
        try
        {
            world = Communicator.FromEnvironment();
        }
        catch (DistributedException e)
        {
            terminal.WriteError(e.Message);
            return ExitCodes.Failure;
        }
        if (!world.IsDistributed)
        {
            using (world) return CliAction.Run(terminal, () => body(world, terminal));
        }
        var rankTerminal = terminal.ForRank(world.Rank, world.Describe());
        int code = CliAction.Run(rankTerminal, () => body(world, rankTerminal));
        if (code != ExitCodes.Success)
        {
            terminal.ErrorWriter.Flush();
            world.Abort(code);
        }
        world.Dispose();
        return code;
    }
}
