export { credentialWorkflow } from './credential.js';
