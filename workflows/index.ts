export { credentialWorkflow } from './credential.js';
export { machineCredentialWorkflow } from './machine.js';
