#!/usr/bin/env node
/**
 * The node agent: a thin CLI that cloud-init starts on every etcd instance. It reads its identity from
 * IMDSv2, finds its Auto Scaling group and peers, and probes for a live cluster.
 *
 * Commands (today): `discover` prints what the agent sees as one JSON document and starts nothing.
 * Bootstrap (join / seed / restore) and supervision of etcd land with the node-agent issue.
 */
import { parseArgs } from 'node:util';
import { AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import { EC2Client } from '@aws-sdk/client-ec2';
import { ImdsIdentitySource } from '../core/aws/identity.js';
import { AwsInstanceInventory } from '../core/aws/inventory.js';
import { loadConfig } from '../core/config.js';
import { Etcd3Cluster } from '../core/etcd/cluster.js';
import { EtcdAwsError, describeError } from '../core/errors.js';
import { discoverCluster, resolveGroup } from '../core/use-cases/discover.js';
import { stderrJsonLog } from './log.js';

const USAGE = `usage: node-agent <command>

commands:
  discover   print this instance's identity, its group, the group's instances and the live cluster (JSON)

Settings come from the environment; see the README's configuration table.`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' } },
  });
  const command = positionals[0];
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  if (command !== 'discover') {
    process.stderr.write(`node-agent: unknown command "${command}"\n${USAGE}\n`);
    return 2;
  }

  const log = stderrJsonLog('node-agent', process.env.POWERTOOLS_LOG_LEVEL);
  const config = loadConfig(process.env, 'agent');
  const identity = await new ImdsIdentitySource().identity();
  const clients = { region: identity.region };
  const inventory = new AwsInstanceInventory(new AutoScalingClient(clients), new EC2Client(clients));
  const groupName = await resolveGroup(identity, inventory, config.asgName);
  const view = await discoverCluster(
    groupName,
    {
      inventory,
      openCluster: (endpoints) => new Etcd3Cluster(endpoints, config),
      clientPort: config.clientPort,
      log,
    },
    config.endpoints,
  );
  process.stdout.write(`${JSON.stringify({ identity, ...view }, null, 2)}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    const what = error instanceof EtcdAwsError ? error.message : `unexpected failure: ${describeError(error)}`;
    process.stderr.write(`node-agent: ${what}\n`);
    process.exit(1);
  },
);
