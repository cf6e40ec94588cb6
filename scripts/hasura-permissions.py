#!/usr/bin/env python3
# Writes the `user` permissions and relationships of hasura/metadata/databases/default/tables/*.yaml
# from the role table (the same one as tenantkit.RolePermissions and tenantkit.role_grants), so that
# Hasura's rules mirror the RLS policies of migrations/00003_rls.sql and 00006_team.sql. The YAML
# files are what Hasura reads and are committed; run this after changing the role table or a
# policy, then review the diff. Event triggers already in the files are kept.
#
# Deliberately not given to Hasura's `user` role: inserting or updating memberships and
# invitations (the team actions do that, with their rules and emails), deleting a tenant (the
# deleteTenant action does that: soft deletion, the Stripe cancellation, the restore window), and
# any write on subscriptions, usage, plans and the audit log (system paths only).
#
# A deleted tenant (tenants.deleted_at set) is nobody's: every rule that reaches a tenant through
# its members also requires deleted_at to be null, as tenantkit.member_tenants does for RLS.
import yaml, os, copy
class NoAlias(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True
ROLES=['guest','member','admin','owner']
GRANTS={'owner':['*'],'admin':['users:*','projects:*','settings:read','settings:write','billing:*'],'member':['projects:read','projects:write'],'guest':['projects:read']}
def covers(g,p):
    return g=='*' or g==p or (g.endswith(':*') and p.startswith(g[:-1]) and len(p)>len(g)-1)
def roles_for(perm,minrole='guest'):
    return [r for r in ROLES if ROLES.index(r)>=ROLES.index(minrole) and (perm is None or any(covers(g,perm) for g in GRANTS[r]))]
def keys(perm):
    return ['*',perm,perm.split(':')[0]+':*']
ME={'user_id':{'_eq':'X-Hasura-User-Id'}}
def member_cond(perm,minrole='guest'):
    # a membership row of the caller allowing perm with role >= minrole
    c=[ME]
    if perm is None:
        if minrole!='guest': c.append({'role':{'_in':roles_for(None,minrole)}})
    else:
        c.append({'_or':[{'role':{'_in':roles_for(perm,minrole)}},
                          {'_and':[{'role':{'_in':roles_for(None,minrole)}},{'permissions':{'_has_keys_any':keys(perm)}}]}]})
    return {'_and':c} if len(c)>1 else c[0]
LIVE={'deleted_at':{'_is_null':True}}
def own_tenant(perm,minrole='guest'):  # on tenants itself: not deleted, and a membership of the caller
    return {'_and':[LIVE,{'members':member_cond(perm,minrole)}]}
def via_tenant(perm,minrole='guest',rel='tenant'):
    return {rel:own_tenant(perm,minrole)}
def manageable(perm):
    # row.role r, caller role >= r and allows perm
    return {'_or':[{'_and':[{'role':{'_eq':r}},via_tenant(perm,r)]} for r in ROLES]}

T=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'hasura', 'metadata', 'databases', 'default', 'tables')
def write(name, doc):
    path=os.path.join(T,f'public_{name}.yaml')
    old={}
    if os.path.exists(path):
        old=yaml.safe_load(open(path)) or {}
    if 'event_triggers' in old: doc['event_triggers']=old['event_triggers']
    with open(path,'w') as f:
        f.write(yaml.dump(doc, Dumper=NoAlias, sort_keys=False, width=120))
tbl=lambda n:{'name':n,'schema':'public'}
tenant_rel={'name':'tenant','using':{'foreign_key_constraint_on':'tenant_id'}}
write('tenants',{
 'table':tbl('tenants'),
 'object_relationships':[{'name':'subscription','using':{'manual_configuration':{'remote_table':tbl('tenant_subscriptions'),'column_mapping':{'id':'tenant_id'}}}}],
 'array_relationships':[
   {'name':'members','using':{'foreign_key_constraint_on':{'column':'tenant_id','table':tbl('tenant_users')}}},
   {'name':'invitations','using':{'foreign_key_constraint_on':{'column':'tenant_id','table':tbl('tenant_invitations')}}},
   {'name':'projects','using':{'foreign_key_constraint_on':{'column':'tenant_id','table':tbl('projects')}}},
   {'name':'audit_log','using':{'foreign_key_constraint_on':{'column':'tenant_id','table':tbl('audit_log')}}},
   {'name':'usage','using':{'foreign_key_constraint_on':{'column':'tenant_id','table':tbl('billing_usage')}}}],
 'select_permissions':[{'role':'user','permission':{'columns':['id','slug','name','settings','created_at','updated_at'],'filter':own_tenant(None)}}],
 'update_permissions':[{'role':'user','permission':{'columns':['name','settings'],'filter':own_tenant('settings:write'),'check':own_tenant('settings:write')}}],
})
write('tenant_users',{
 'table':tbl('tenant_users'),
 'object_relationships':[tenant_rel],
 'select_permissions':[{'role':'user','permission':{'columns':['tenant_id','user_id','role','permissions','invited_by','joined_at'],'filter':via_tenant(None)}}],
 'delete_permissions':[{'role':'user','permission':{'filter':{'_or':[{'_and':[ME,{'tenant':LIVE}]},manageable('users:write')]}}}],
})
write('tenant_invitations',{
 'table':tbl('tenant_invitations'),
 'object_relationships':[tenant_rel],
 'select_permissions':[{'role':'user','permission':{'columns':['id','tenant_id','email','role','invited_by','status','expires_at','accepted_by','accepted_at','created_at','updated_at'],'filter':via_tenant('users:invite')}}],
 'delete_permissions':[{'role':'user','permission':{'filter':manageable('users:invite')}}],
})
write('projects',{
 'table':tbl('projects'),
 'object_relationships':[tenant_rel],
 'select_permissions':[{'role':'user','permission':{'columns':['id','tenant_id','name','description','owner_id','settings','created_at','updated_at'],'filter':via_tenant('projects:read')}}],
 'insert_permissions':[{'role':'user','permission':{'columns':['tenant_id','name','description','settings'],'set':{'owner_id':'X-Hasura-User-Id'},'check':{'_and':[via_tenant('projects:write'),{'owner_id':{'_eq':'X-Hasura-User-Id'}}]}}}],
 'update_permissions':[{'role':'user','permission':{'columns':['name','description','settings'],'filter':via_tenant('projects:write'),'check':via_tenant('projects:write')}}],
 'delete_permissions':[{'role':'user','permission':{'filter':via_tenant('projects:write')}}],
})
write('tenant_subscriptions',{
 'table':tbl('tenant_subscriptions'),
 'object_relationships':[tenant_rel,{'name':'plan','using':{'foreign_key_constraint_on':'plan_id'}}],
 'select_permissions':[{'role':'user','permission':{'columns':['tenant_id','plan_id','status','trial_ends_at','current_period_start','current_period_end','cancel_at_period_end','cancel_at','canceled_at'],'filter':via_tenant(None)}}],
})
write('billing_usage',{
 'table':tbl('billing_usage'),
 'object_relationships':[tenant_rel],
 'select_permissions':[{'role':'user','permission':{'columns':['tenant_id','metric','period_start','period_end','quantity'],'filter':via_tenant(None)}}],
})
write('audit_log',{
 'table':tbl('audit_log'),
 'object_relationships':[tenant_rel],
 'select_permissions':[{'role':'user','permission':{'columns':['id','tenant_id','actor_id','action','subject','details','created_at'],'filter':via_tenant('settings:read')}}],
})
write('subscription_plans',{
 'table':tbl('subscription_plans'),
 'select_permissions':[{'role':'user','permission':{'columns':['id','key','name','description','unit_amount','currency','interval','features','limits','sort_order','per_seat'],'filter':{}}}],
})
