import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import './styles.css';
import { api, resume, signOut, whenUnauthorized, type Me } from './api';
import { href, navigate, useRoute } from './router';
import { SignIn } from './pages/SignIn';
import { Apps } from './pages/Apps';
import { NewFunction } from './pages/NewFunction';
import { ProjectPage } from './pages/Project';
import { FunctionPage } from './pages/Function';
import { Spinner } from './ui';

function App() {
  const route = useRoute();
  const [me, setMe] = useState<Me | null>(null);
  const [checked, setChecked] = useState(false);

  useEffect(() => {
    whenUnauthorized(() => {
      setMe(null);
      navigate({ page: 'signin' });
    });
    resume()
      .then((session) => (session ? api.me().then(setMe) : undefined))
      .catch(() => setMe(null))
      .finally(() => setChecked(true));
  }, []);

  if (!checked) {
    return (
      <main class="center">
        <Spinner />
      </main>
    );
  }
  if (!me || route.page === 'signin') {
    return (
      <SignIn
        onSignedIn={(user) => {
          setMe(user);
          if (route.page === 'signin') navigate({ page: 'apps' });
        }}
      />
    );
  }

  let page;
  switch (route.page) {
    case 'apps':
      page = <Apps />;
      break;
    case 'new':
      page = <NewFunction project={route.project} />;
      break;
    case 'project':
      page = <ProjectPage key={route.project} project={route.project} />;
      break;
    case 'function':
      page = <FunctionPage key={`${route.project}/${route.fn}`} project={route.project} fn={route.fn} tab={route.tab} />;
      break;
  }
  return (
    <>
      <header class="topbar">
        <a class="brand" href={href({ page: 'apps' })}>
          <svg viewBox="0 0 32 32" aria-hidden="true" width="22" height="22">
            <path d="M9 23a6 6 0 0 1 0-12 8 8 0 0 1 15 2 5 5 0 0 1-1 10z" fill="currentColor" />
          </svg>
          Kumo
        </a>
        <nav aria-label="Main">
          <a href={href({ page: 'apps' })} aria-current={route.page === 'apps' ? 'page' : undefined}>
            Apps
          </a>
          <a class="btn btn-primary btn-small" href={href({ page: 'new' })}>
            New function
          </a>
        </nav>
        <div class="who">
          <span>{me.username}</span>
          <button
            type="button"
            class="btn btn-small btn-ghost"
            onClick={async () => {
              await signOut();
              setMe(null);
              navigate({ page: 'signin' });
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <main class="page">{page}</main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
