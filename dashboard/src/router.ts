// Pages live in the URL fragment (`#/f/demo/hello/logs`), so the
// dashboard never takes a path from the gateway or the API.

import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { page: 'signin' }
  | { page: 'apps' }
  | { page: 'new'; project?: string }
  | { page: 'project'; project: string }
  | { page: 'function'; project: string; fn: string; tab: string };

export function parse(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case 'signin':
      return { page: 'signin' };
    case 'new':
      return { page: 'new', project: parts[1] };
    case 'p':
      if (parts[1]) return { page: 'project', project: parts[1] };
      break;
    case 'f':
      if (parts[1] && parts[2]) return { page: 'function', project: parts[1], fn: parts[2], tab: parts[3] ?? 'code' };
      break;
  }
  return { page: 'apps' };
}

export function href(route: Route): string {
  const e = encodeURIComponent;
  switch (route.page) {
    case 'signin':
      return '#/signin';
    case 'apps':
      return '#/';
    case 'new':
      return route.project ? `#/new/${e(route.project)}` : '#/new';
    case 'project':
      return `#/p/${e(route.project)}`;
    case 'function':
      return `#/f/${e(route.project)}/${e(route.fn)}${route.tab && route.tab !== 'code' ? '/' + e(route.tab) : ''}`;
  }
}

export function navigate(route: Route) {
  location.hash = href(route);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const update = () => setRoute(parse(location.hash));
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  return route;
}
