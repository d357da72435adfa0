// The console's HDF5 viewer: h5web's App reading one file through the proposal's h5grove-compatible routes.
// Same origin: fetch sends the console's login cookie; every request is decided by the file's ACL.
import '@h5web/app/styles.css';
import './viewer.css';
import { App, H5GroveProvider } from '@h5web/app';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

const mount = document.getElementById('h5web');
const { url, file, path } = mount.dataset;

createRoot(mount).render(
  <StrictMode>
    <H5GroveProvider url={new URL(url, window.location.origin).href} filepath={file}>
      <App initialPath={path || '/'} />
    </H5GroveProvider>
  </StrictMode>,
);
