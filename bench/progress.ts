import ora, { type Ora } from 'ora';

/**
 * Progress of a bench: on a terminal a spinner (ora) naming the step and run; elsewhere (CI logs, a file) one
 * line per step and per run, each with the time since the bench started.
 */
export class Progress {
  private readonly started = Date.now();
  private spinner: Ora | undefined;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  private elapsed(): string {
    return `${String(Math.round((Date.now() - this.started) / 1000)).padStart(4)} s`;
  }

  /** A new step. */
  step(text: string): void {
    this.spinner?.succeed();
    if (this.stream.isTTY) this.spinner = ora({ text: `${this.elapsed()}  ${text}`, stream: this.stream }).start();
    else this.stream.write(`bench ${this.elapsed()}  ${text}\n`);
  }

  /** Where the current step is (e.g. "run 2/5"). */
  update(text: string): void {
    if (this.spinner) this.spinner.text = `${this.elapsed()}  ${text}`;
    else this.stream.write(`bench ${this.elapsed()}    ${text}\n`);
  }

  done(text: string): void {
    if (this.spinner) this.spinner.succeed(`${this.elapsed()}  ${text}`);
    else this.stream.write(`bench ${this.elapsed()}  ${text}\n`);
    this.spinner = undefined;
  }

  fail(): void {
    this.spinner?.fail();
    this.spinner = undefined;
  }
}
