using LoraRuntime.Cli;

return LoraApp.Run(args, Terminal.System);
