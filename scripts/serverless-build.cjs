// Local Serverless plugin: builds the bundles before Serverless zips them, so `serverless package` and
// `serverless deploy` never ship a stale or missing dist/; then writes the node agent's SHA-256 into the
// launch template's user data, so instances verify what they download and a new agent rolls the nodes.
'use strict';

const { createHash } = require('node:crypto');
const { readFileSync } = require('node:fs');
const path = require('node:path');

class BuildBundles {
  constructor(serverless) {
    let agentSha256;
    const build = async () => {
      const { build: run } = await import('./build.mjs');
      serverless.cli.log('etcd-aws: building bundles with esbuild');
      const { agent } = await run({ quiet: true });
      agentSha256 = createHash('sha256').update(readFileSync(agent)).digest('hex');
    };
    const stampAgentHash = () => {
      // The stack's own resources (infra/*.yml), before Serverless merges them into the template it writes.
      const resources = serverless.service.resources?.Resources;
      const userData = resources?.NodeLaunchTemplate?.Properties?.LaunchTemplateData?.UserData;
      const variables = userData?.['Fn::Base64']?.['Fn::Sub']?.[1];
      if (!variables || !('AgentSha256' in variables)) {
        throw new Error('etcd-aws: NodeLaunchTemplate user data has no AgentSha256 variable to stamp (infra/cluster.yml)');
      }
      if (!agentSha256) {
        const file = path.join(serverless.serviceDir, 'dist', 'node-agent', 'node-agent.mjs');
        agentSha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
      }
      variables.AgentSha256 = agentSha256;
    };
    this.hooks = {
      'before:package:createDeploymentArtifacts': build,
      'before:deploy:function:packageFunction': build,
      'before:package:finalize': stampAgentHash,
    };
  }
}

module.exports = BuildBundles;
