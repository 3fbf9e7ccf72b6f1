export { credentialWorkflow } from './credential.js';
export { machineCredentialWorkflow } from './machine.js';
export { deliveryWorkflow } from './events.js';
