import type { GroupInstance } from '../../core/domain/instances.js';
import type { Member } from '../../core/domain/members.js';

/** A member as etcd lists it; an unstarted one (no name yet) has no client URLs. */
export const member = (id: string, name: string, ip: string, isLearner = false): Member => ({
  id,
  name,
  peerUrls: [`http://${ip}:2380`],
  clientUrls: name ? [`http://${ip}:2379`] : [],
  isLearner,
});

/** An instance of the group as Auto Scaling and EC2 describe it. */
export const groupInstance = (instanceId: string, privateIp: string | undefined, lifecycleState = 'InService'): GroupInstance => ({
  instanceId,
  privateIp,
  lifecycleState,
  healthStatus: 'Healthy',
  availabilityZone: 'us-east-1a',
});
