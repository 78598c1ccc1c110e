"""The part of Linear's GraphQL schema that our client uses, as Linear declares it (types, argument and
input field names and nullability follow ``packages/sdk/src/schema.graphql`` of linear/linear; everything
else is left out). The Linear stand-in validates and runs every query against it with ``graphql-core``:
a field, argument or variable type our client gets wrong fails here as it would against Linear.
"""

SDL = """
scalar DateTime
scalar TimelessDate

type Query {
  issue(id: String!): Issue!
  issues(filter: IssueFilter, first: Int, after: String, includeArchived: Boolean): IssueConnection!
  issueLabels(filter: IssueLabelFilter, first: Int, after: String): IssueLabelConnection!
  team(id: String!): Team!
  users(filter: UserFilter, first: Int, after: String, includeDisabled: Boolean): UserConnection!
  viewer: User!
}

type Mutation {
  issueCreate(input: IssueCreateInput!): IssuePayload!
  issueUpdate(id: String!, input: IssueUpdateInput!): IssuePayload!
  issueLabelCreate(input: IssueLabelCreateInput!, replaceTeamLabels: Boolean): IssueLabelPayload!
}

type PageInfo { hasNextPage: Boolean! endCursor: String }

type Issue {
  id: ID!
  identifier: String!
  title: String!
  description: String
  url: String!
  priority: Float!
  dueDate: TimelessDate
  createdAt: DateTime!
  updatedAt: DateTime!
  state: WorkflowState!
  team: Team!
  assignee: User
  labels(first: Int): IssueLabelConnection!
}
type IssueConnection { nodes: [Issue!]! pageInfo: PageInfo! }
type IssuePayload { success: Boolean! issue: Issue lastSyncId: Float! }

type WorkflowState { id: ID! name: String! type: String! position: Float! color: String! }
type WorkflowStateConnection { nodes: [WorkflowState!]! pageInfo: PageInfo! }

type Team {
  id: ID!
  key: String!
  name: String!
  states(filter: WorkflowStateFilter, first: Int, after: String): WorkflowStateConnection!
}

type User { id: ID! name: String! displayName: String! email: String! active: Boolean! }
type UserConnection { nodes: [User!]! pageInfo: PageInfo! }

type IssueLabel { id: ID! name: String! team: Team }
type IssueLabelConnection { nodes: [IssueLabel!]! pageInfo: PageInfo! }
type IssueLabelPayload { success: Boolean! issueLabel: IssueLabel! lastSyncId: Float! }

input IDComparator { eq: ID neq: ID in: [ID!] nin: [ID!] }
input StringComparator {
  eq: String neq: String in: [String!] nin: [String!] contains: String containsIgnoreCase: String
  notContains: String startsWith: String endsWith: String
}
input NullableStringComparator {
  eq: String neq: String in: [String!] nin: [String!] contains: String containsIgnoreCase: String
  notContains: String startsWith: String endsWith: String null: Boolean
}
input BooleanComparator { eq: Boolean neq: Boolean }

input TeamFilter { id: IDComparator key: StringComparator name: StringComparator and: [TeamFilter!] or: [TeamFilter!] }
input NullableTeamFilter {
  id: IDComparator key: StringComparator name: StringComparator null: Boolean
  and: [NullableTeamFilter!] or: [NullableTeamFilter!]
}
input WorkflowStateFilter { id: IDComparator name: StringComparator type: StringComparator }
input IssueFilter {
  id: IDComparator
  title: StringComparator
  description: NullableStringComparator
  team: TeamFilter
  and: [IssueFilter!]
  or: [IssueFilter!]
}
input IssueLabelFilter {
  id: IDComparator name: StringComparator team: NullableTeamFilter
  and: [IssueLabelFilter!] or: [IssueLabelFilter!]
}
input UserFilter {
  id: IDComparator name: StringComparator email: StringComparator active: BooleanComparator
  and: [UserFilter!] or: [UserFilter!]
}

input IssueCreateInput {
  id: String
  title: String
  description: String
  teamId: String!
  priority: Int
  assigneeId: String
  stateId: String
  dueDate: TimelessDate
  labelIds: [String!]
}
input IssueUpdateInput {
  title: String
  description: String
  teamId: String
  priority: Int
  assigneeId: String
  stateId: String
  dueDate: TimelessDate
  labelIds: [String!]
}
input IssueLabelCreateInput { id: String name: String! teamId: String color: String description: String }
"""
